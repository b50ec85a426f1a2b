"""Supervisor log files: one per namespace, in a per-user directory
($SHMBROKER_LOG_DIR, else $XDG_RUNTIME_DIR/shmbroker, else
~/.cache/shmbroker) created 0700 and refused unless it is ours and only we
may write to it; files opened by the directory's fd without following
symlinks, mode 0600 whatever the umask, rotated (bounded size), removed by
destroy."""
import errno
import logging.handlers
import os
import stat

LOG_MAX_BYTES = 1 << 20  # a supervisor's log rotates at 1 MiB ...
LOG_BACKUPS = 2  # ... keeping two older files: at most 3 MiB per namespace


def log_dir():
    """Where supervisor logs go: $SHMBROKER_LOG_DIR, else a per-user
    directory, $XDG_RUNTIME_DIR/shmbroker or ~/.cache/shmbroker."""
    d = os.environ.get("SHMBROKER_LOG_DIR")
    if d:
        return os.path.abspath(d)
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isabs(xdg) and os.path.isdir(xdg):
        return os.path.join(xdg, "shmbroker")
    return os.path.join(os.path.expanduser("~"), ".cache", "shmbroker")


def log_path(ns):
    return os.path.join(log_dir(), "%s.log" % ns)


def _open_log_dir():
    """An fd of the log directory, created 0700 if missing; refused
    (OSError) unless it is this user's and no one else may write to it."""
    d = log_dir()
    os.makedirs(os.path.dirname(d), mode=0o700, exist_ok=True)
    try:
        os.mkdir(d, 0o700)
    except FileExistsError:
        pass
    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    st = os.fstat(fd)
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        os.close(fd)
        raise PermissionError(errno.EPERM, "log directory %s is owned by uid %d with mode %04o: it must be yours and "
                              "writable by you only (set SHMBROKER_LOG_DIR elsewhere)" % (d, st.st_uid, st.st_mode & 0o7777))
    return fd


class LogFile(logging.handlers.RotatingFileHandler):
    """A rotating log file opened inside the checked directory (by its fd),
    never through a symlink, mode 0600 whatever the umask."""

    def __init__(self, dir_fd, name, max_bytes=LOG_MAX_BYTES, backups=LOG_BACKUPS):
        self._dir_fd = dir_fd
        super().__init__(os.path.join(log_dir(), name), maxBytes=max_bytes, backupCount=backups)

    def _open(self):
        fd = os.open(os.path.basename(self.baseFilename), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=self._dir_fd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_nlink != 1:
                raise PermissionError(errno.EPERM, "%s is not a plain file of ours" % self.baseFilename)
            os.fchmod(fd, 0o600)
            return os.fdopen(fd, "a", encoding="utf-8")
        except BaseException:
            os.close(fd)
            raise

    def close(self):
        super().close()
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None


def open_log(ns, max_bytes=LOG_MAX_BYTES, backups=LOG_BACKUPS):
    """The namespace's log file handler (raises OSError if it cannot be
    opened safely)."""
    fd = _open_log_dir()
    try:
        return LogFile(fd, "%s.log" % ns, max_bytes, backups)
    except BaseException:
        os.close(fd)
        raise


def remove_logs(ns):
    """Remove the namespace's log files (destroy); nothing if the log
    directory is not ours."""
    try:
        fd = _open_log_dir()
    except OSError:
        return
    try:
        for name in ["%s.log" % ns] + ["%s.log.%d" % (ns, i) for i in range(1, LOG_BACKUPS + 1)]:
            try:
                os.unlink(name, dir_fd=fd)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)
