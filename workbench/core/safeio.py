"""Layer 1: the one way the workbench reads what a user types, shares or loads.

Every YAML read (scenario, calibration, policy file, ``name(k=v)`` policy parameters,
``--set`` values) goes through :func:`load_yaml_text` or :func:`read_yaml_file`:

- only regular files are read (never a FIFO, a device such as ``/dev/zero``, a folder), and
  at most :data:`MAX_YAML_BYTES` of them;
- the text must be UTF-8;
- aliases and anchors are refused (no "billion laughs"), so are duplicate keys, nesting
  deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` values, and any tag the safe
  loader does not know (``!!python/...``);
- every decoding or YAML error becomes one line, and no message embeds more than a short,
  truncated ``repr`` of user data (:func:`short`).

Paths a user names are checked by :func:`check_path` (no NUL byte, no component over 255
bytes, no path over 4095 bytes) before the file system sees them.
"""
from __future__ import annotations

import copy
import errno
import functools
import os
import stat
import tempfile
from pathlib import Path

import yaml

MAX_YAML_BYTES = 256_000        # a scenario is 1-2 KB, the calibration 12 KB
MAX_NODES = 10_000              # the calibration has 189
MAX_TEXT_CHARS = 10_000         # one --set value or policy parameter
MAX_DEPTH = 32                  # configs nest 3 deep
MAX_NAME_BYTES = 255            # NAME_MAX on Linux
MAX_PATH_BYTES = 4095           # PATH_MAX - 1


from .errors import ConfigError  # noqa: E402  (raised by the readers below)


def short(value, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, on one line: safe to put in a message."""
    if isinstance(value, (str, bytes, int, float, bool, type(None))):
        text = repr(value)
    else:
        text = f"<{type(value).__name__}>"
    text = text.replace("\n", "\\n").replace("\r", "\\r")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def check_path(value, what: str = "path") -> Path:
    """``value`` as a :class:`Path`, or :class:`ConfigError` for what no file system accepts."""
    if isinstance(value, bytes) or not isinstance(value, (str, os.PathLike)):
        raise ConfigError(f"{what}: expected a path, not {short(value)}")
    text = os.fspath(value)
    if not isinstance(text, str):
        raise ConfigError(f"{what}: expected a text path, not {short(text)}")
    if not text.strip():
        raise ConfigError(f"{what}: the path is empty")
    if "\x00" in text:
        raise ConfigError(f"{what} {short(text)}: contains a NUL byte")
    raw = text.encode("utf-8", "surrogateescape")
    if len(raw) > MAX_PATH_BYTES:
        raise ConfigError(f"{what} {short(text)}: longer than {MAX_PATH_BYTES} bytes")
    if any(len(part) > MAX_NAME_BYTES for part in raw.split(b"/")):
        raise ConfigError(f"{what} {short(text)}: a name in it is longer than "
                         f"{MAX_NAME_BYTES} bytes")
    return Path(text)


class _Loader(yaml.SafeLoader):
    """The safe loader without aliases, anchors, duplicate keys or deep nesting."""

    _depth = 0
    _nodes = 0

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise ConfigError("YAML aliases (*name) are not accepted")
        event = self.peek_event()
        if getattr(event, "anchor", None) is not None:
            raise ConfigError("YAML anchors (&name) are not accepted")
        self._depth += 1
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ConfigError(f"YAML with more than {MAX_NODES} values")
        try:
            if self._depth > MAX_DEPTH:
                raise ConfigError(f"YAML nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else id(key_node)
                if key in seen:
                    raise ConfigError(f"duplicate key {short(key)}")
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_undefined(self, node):
        raise ConfigError(f"YAML tag {short(node.tag)} is not accepted")


_Loader.add_constructor(None, _Loader.construct_undefined)


def _why(err: BaseException) -> str:
    if isinstance(err, yaml.MarkedYAMLError) and err.problem_mark is not None:
        m = err.problem_mark
        return f"{err.problem or 'invalid YAML'} (line {m.line + 1}, column {m.column + 1})"
    if isinstance(err, yaml.YAMLError):
        return "invalid YAML"
    if isinstance(err, RecursionError):
        return f"YAML nested deeper than {MAX_DEPTH} levels"
    return f"invalid value ({type(err).__name__})"


def load_yaml_text(text: str, what: str = "YAML"):
    """Parse one YAML document from ``text`` under the rules above. A text seen before is
    not parsed again (every run reads its scenario and calibration: the pure-Python parser
    took ~40 ms a run); each caller gets its own copy."""
    if not isinstance(text, str):
        raise ConfigError(f"{what}: expected text, not {short(text)}")
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(f"{what}: longer than {MAX_YAML_BYTES} characters")
    return copy.deepcopy(_parsed(text, what))


@functools.lru_cache(maxsize=32)
def _parsed(text: str, what: str):
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except ConfigError as err:
        raise ConfigError(f"{what}: {err}") from None
    except (yaml.YAMLError, ValueError, TypeError, OverflowError, RecursionError) as err:
        # ValueError: e.g. a timestamp such as 2024-13-45; RecursionError: never, by MAX_DEPTH
        raise ConfigError(f"{what}: cannot read YAML: {_why(err)}") from None


def open_regular(path, what: str = "file", limit: int = MAX_YAML_BYTES, *,
                 follow: bool = True):
    """``path`` opened for reading in binary, checked before a byte is read: a regular file
    (never a FIFO, a device such as ``/dev/zero``, a folder) of at most ``limit`` bytes;
    ``follow=False`` (files a data file or a store names) refuses a symbolic link too."""
    p = check_path(path, what)
    name = short(str(p), 80)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags if follow else flags | os.O_NOFOLLOW)
    except OSError as err:
        if not follow and err.errno == errno.ELOOP:
            raise ConfigError(f"{what} {name}: is a symbolic link; not followed") from None
        raise ConfigError(f"{what} {name}: cannot open ({err.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{what} {name}: not a regular file")
        if st.st_size > limit:
            raise ConfigError(f"{what} {name}: larger than {limit} bytes")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path, what: str = "file", limit: int = MAX_YAML_BYTES, *,
               follow: bool = True) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes (:func:`open_regular`)."""
    name = short(str(path), 80)
    with open_regular(path, what, limit, follow=follow) as f:
        try:
            data = f.read(limit + 1)
        except OSError as err:
            raise ConfigError(f"{what} {name}: cannot read ({err.strerror})") from None
    if len(data) > limit:
        raise ConfigError(f"{what} {name}: larger than {limit} bytes")
    return data


def inside(folder, name, what: str = "file") -> Path:
    """``name``, a path a data file in ``folder`` gives, as a path in that folder: a
    relative path without ``..`` that stays in ``folder`` once links are resolved. Data
    never names a file elsewhere on the machine."""
    if not isinstance(name, str):
        raise ConfigError(f"{what}: expected a file name, not {short(name)}")
    rel = check_path(name, what)
    if rel.is_absolute() or ".." in rel.parts:
        raise ConfigError(f"{what} {short(name, 80)}: must be a file in the same folder "
                          "(a relative path without '..')")
    base = Path(folder)
    p = base / rel
    try:
        real, top = p.resolve(), base.resolve()
    except (OSError, RuntimeError):
        raise ConfigError(f"{what} {short(name, 80)}: cannot be resolved") from None
    if top != real and top not in real.parents:
        raise ConfigError(f"{what} {short(name, 80)}: leads out of its folder (a link)")
    return p


def is_link(p) -> bool:
    """``p`` is a symbolic link (never followed to find out)."""
    try:
        return stat.S_ISLNK(os.lstat(p).st_mode)
    except OSError:
        return False


def read_text_file(path, what: str = "file", limit: int = MAX_YAML_BYTES, *,
                   follow: bool = True) -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes."""
    name = short(str(path), 80)
    data = read_bytes(path, what, limit, follow=follow)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {name}: not UTF-8 text (byte {err.start})") from None


def read_yaml_file(path, what: str = "file"):
    """The YAML document in a regular UTF-8 file, under the rules above."""
    text = read_text_file(path, what)
    return load_yaml_text(text, f"{what} {short(str(path), 80)}")


def out_path(value, what: str = "--out") -> Path:
    """A folder a result may be written to: a valid path that is not the current folder or
    above it, and, if it exists, one this process may list."""
    out = check_path(value, what)
    where = f"{what} {short(str(out), 80)}"
    cwd = Path.cwd()
    if out.name in ("", ".", "..") or Path(os.path.abspath(out)) in (cwd, *cwd.parents):
        raise ConfigError(f"{where}: is the current folder or above it; name a results folder")
    try:
        if out.is_dir() and not os.access(out, os.R_OK | os.X_OK):
            raise ConfigError(f"{where}: the folder cannot be read")
    except OSError as err:
        raise ConfigError(f"{where}: cannot use it ({err.strerror})") from None
    return out


def probe_writable(out: Path) -> None:
    """Raise ``OSError`` unless a result can be written at ``out``, creating nothing: the
    nearest existing folder on the way (and ``out`` itself if it exists) must take a file."""
    parent = next(p for p in (out.parent, *out.parent.parents) if p.exists())
    for d in ((out, parent) if out.is_dir() else (parent,)):
        if not d.is_dir():
            raise NotADirectoryError(20, "Not a directory", str(d))
        if not os.access(d, os.W_OK | os.X_OK):
            raise PermissionError(13, "Permission denied", str(d))
        tempfile.TemporaryFile(dir=d).close()   # unlinked at once: leaves no trace


def import_user(module: str, what: str, attr: str | None = None):
    """The user's ``module`` (or its ``attr``), imported when they name it: a name that is
    not dotted identifiers, or any failure of their code, is one line ``what: ...``."""
    import importlib
    if not module or not all(p.isidentifier() for p in module.split(".")) or \
            (attr is not None and not attr.isidentifier()):
        raise ConfigError(f"{what}: expected " + ("MODULE:NAME" if attr is not None else
                                                  "a module name (pkg.module)"))
    try:
        mod = importlib.import_module(module)
        return mod if attr is None else getattr(mod, attr)
    except Exception as err:     # the user's code: any failure is one line
        raise ConfigError(f"{what}: {type(err).__name__}: {short(str(err), 120)[1:-1]}") from None


TMP = ".tmp-"          # the prefix of a file being written (the store clears them)


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def clean_killed_writes(path: Path) -> None:
    """Remove what a killed :func:`atomic_write` of ``path`` left beside it: only a regular
    file named ``.tmp-NAME.PID`` whose process is gone (provably ours)."""
    prefix = f"{TMP}{path.name}."
    try:
        names = [n for n in os.listdir(path.parent) if n.startswith(prefix)]
    except OSError:
        return
    for n in names:
        pid = n[len(prefix):]
        p = path.parent / n
        if pid.isdigit() and _dead(int(pid)) and stat.S_ISREG(os.lstat(p).st_mode):
            p.unlink(missing_ok=True)


def atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then ``os.replace`` onto ``path``: readers see the old file or
    the new one, never a part; what a killed earlier write left is removed first."""
    clean_killed_writes(path)
    tmp = path.with_name(f"{TMP}{path.name}.{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
