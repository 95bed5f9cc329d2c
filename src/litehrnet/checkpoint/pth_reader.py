"""Read PyTorch .pth/.pt checkpoints into numpy arrays without torch, through a restricted unpickler.

Both torch serialization formats are read: the zip archive (torch >= 1.6: ``<archive>/data.pkl`` plus one
raw storage per ``<archive>/data/<key>`` record) and the legacy stream (magic number, protocol version,
system info, the pickled object, the storage key list, then each storage as an 8-byte element count and
its raw bytes; this is what mmpose's ``publish_model`` writes).

Nothing named in the pickle is imported or executed. The globals that tensors are built from resolve to
local stand-ins that only record storage views; a few plain containers (OrderedDict, set, ...) are the real
types. Every other global becomes an inert stand-in: a fresh class that records whatever it is called with
and does nothing else. That is how mmengine files (``HistoryBuffer``, numpy arrays, ``Counter``,
``_codecs.encode``, ``__builtin__.getattr`` in their ``message_hub`` and ``meta``) are read: their state dict
is ordinary tensors, the rest is set aside unread. Globals that a checkpoint never needs and that exist to
run code, touch files or the network, or reach the interpreter (os, subprocess, eval, ...) are refused
outright, so a malicious file is reported rather than quietly stubbed.
"""
import collections
import functools
import math
import os
import pickle
import pickletools
import tarfile
import types
import zipfile
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, NamedTuple, Optional, Tuple

import numpy as np

__all__ = ["read_pth"]

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL = 1001

# torch dtype name -> numpy dtype of its raw bytes (bfloat16 is read as uint16, then widened to float32)
_RAW_DTYPES = {
    "float64": "f8", "float32": "f4", "float16": "f2", "bfloat16": "u2",
    "int64": "i8", "int32": "i4", "int16": "i2", "int8": "i1",
    "uint64": "u8", "uint32": "u4", "uint16": "u2", "uint8": "u1",
    "bool": "b1", "complex128": "c16", "complex64": "c8",
}
_STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexDoubleStorage": "complex128", "ComplexFloatStorage": "complex64",
    "UntypedStorage": "uint8",
}


class _Refused(Exception):
    """A pickle asked for a global outside the allow-list."""


class _StorageType(NamedTuple):
    """Stand-in for a torch storage class (``torch.FloatStorage``...): only its element dtype matters."""
    dtype: str


class _DType(NamedTuple):
    """Stand-in for a torch dtype object (``torch.float32``...), as passed to ``_rebuild_tensor_v3``."""
    name: str


class _Storage(NamedTuple):
    """A storage record: ``numel`` elements of ``dtype`` starting at element ``start`` of record ``key``."""
    key: str
    dtype: str
    numel: int
    start: int = 0


class _TensorRef(NamedTuple):
    """A tensor still to be read: a strided view (in elements of ``dtype``) of a storage."""
    storage: _Storage
    dtype: str
    offset: int
    size: Tuple[int, ...]
    stride: Tuple[int, ...]


def _tensor_ref(storage, dtype, offset, size, stride) -> _TensorRef:
    """Validate the arguments of a tensor rebuild call, so that reading it later cannot go astray."""
    size, stride = tuple(size), tuple(stride)
    numbers = (offset, *size, *stride)
    if not isinstance(storage, _Storage) or not all(type(n) is int and n >= 0 for n in numbers) \
            or len(size) != len(stride):
        raise pickle.UnpicklingError("tensor rebuilt from an invalid storage, offset, size or stride")
    return _TensorRef(storage, dtype, offset, size, stride)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    return _tensor_ref(storage, getattr(storage, "dtype", None), storage_offset, size, stride)


def _rebuild_tensor_v3(storage, storage_offset, size, stride, requires_grad, backward_hooks, dtype,
                       metadata=None):
    if not isinstance(dtype, _DType):
        raise pickle.UnpicklingError("tensor rebuilt with an invalid dtype")
    return _tensor_ref(storage, dtype.name, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, state=None):
    return data


def _device(kind, index=None):
    return kind if index is None else f"{kind}:{index}"


def _allowed_globals() -> Dict[Tuple[str, str], Any]:
    """(module, name) -> local stand-in, for every global a tensor is built from (and plain containers)."""
    allowed: Dict[Tuple[str, str], Any] = {
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor_v3"): _rebuild_tensor_v3,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("torch", "device"): _device,
        ("torch", "Size"): tuple,
        ("collections", "OrderedDict"): collections.OrderedDict,
    }
    builders = dict(set=set, frozenset=frozenset, complex=complex, bytearray=_bytearray)
    for name, builder in builders.items():  # protocol-2 pickles spell builtins '__builtin__'
        allowed[("builtins", name)] = allowed[("__builtin__", name)] = builder
    for name, dtype in _STORAGE_DTYPES.items():
        allowed[("torch", name)] = _StorageType(dtype)
    allowed[("torch.storage", "UntypedStorage")] = _StorageType("uint8")  # how torch >= 2 spells it
    for name in _RAW_DTYPES:
        allowed[("torch", name)] = _DType(name)
    return allowed


def _bytearray(source=b"", *args):
    """bytearray of existing data only: ``bytearray(n)`` would allocate n bytes that the file never held."""
    if isinstance(source, int):
        raise pickle.UnpicklingError(f"bytearray({source}) would allocate memory the file does not hold")
    return bytearray(source, *args)


_ALLOWED = _allowed_globals()

# Module roots whose globals run code, touch files, processes or the network, or reach the interpreter's
# machinery. Tensor checkpoints never name them; a pickle that does is refused (the getattr and
# _codecs.encode stand-ins below are the only exceptions, and they are inert). ``torch`` is here too:
# its tensor globals are allow-listed above and any other torch global is a format this reader does not know.
_REFUSED_MODULES = frozenset({
    "os", "posix", "nt", "posixpath", "ntpath", "subprocess", "sys", "builtins", "__builtin__", "__main__",
    "shutil", "socket", "ssl", "select", "selectors", "importlib", "imp", "zipimport", "pkgutil", "runpy",
    "site", "code", "codeop", "pdb", "bdb", "timeit", "trace", "profile", "cProfile", "inspect", "pickle",
    "_pickle", "pickletools", "shelve", "marshal", "copyreg", "copy_reg", "types", "functools", "operator",
    "_operator", "itertools", "io", "_io", "pathlib", "tempfile", "glob", "fileinput", "signal", "pty", "tty",
    "ctypes", "_ctypes", "cffi", "multiprocessing", "concurrent", "threading", "_thread", "asyncio",
    "webbrowser", "platform", "commands", "popen2", "urllib", "urllib2", "http", "httplib", "ftplib",
    "smtplib", "telnetlib", "xmlrpc", "sqlite3", "dbm", "gc", "weakref", "atexit", "codecs", "_codecs",
    "ast", "dis", "linecache", "tokenize", "distutils", "setuptools", "pip", "torch", "dill", "cloudpickle",
    "joblib", "yaml",
})
# Names that run code whatever module they come from (e.g. numpy.testing's runstring).
_REFUSED_NAMES = frozenset({
    "eval", "exec", "execfile", "compile", "system", "popen", "spawn", "spawnv", "spawnl", "execv", "execve",
    "execl", "fork", "Popen", "run", "call", "check_call", "check_output", "getoutput", "getstatusoutput",
    "runstring", "runcode", "__import__", "import_module", "open", "load", "loads", "apply", "input",
    "breakpoint", "globals", "locals", "vars", "setattr", "delattr", "__getattribute__", "attrgetter",
    "methodcaller", "interact",
})
# Globals mmengine pickles in its message hub and meta, resolved to inert stand-ins (never the real
# functions) although their modules are refused otherwise.
_INERT_EXCEPTIONS = frozenset({("__builtin__", "getattr"), ("builtins", "getattr"), ("_codecs", "encode")})


class _InertType(type):
    """Metaclass of the inert stand-ins: a pickle cannot set attributes on one (BUILD on the class)."""

    def __setattr__(cls, name, value):
        raise pickle.UnpicklingError(f"a pickle tried to set {name!r} on the stand-in for {cls.__qualname__}")

    def __delattr__(cls, name):
        raise pickle.UnpicklingError(f"a pickle tried to delete {name!r} of the stand-in for {cls.__qualname__}")


class _Inert(metaclass=_InertType):
    """Stand-in for a global the reader does not need: it records what it is called or built with, nothing more.

    Calling the stand-in (pickle's REDUCE), instantiating it (NEWOBJ), setting its state (BUILD) or its items
    (SETITEMS / APPENDS), and calling an instance, all give or update plain records. No code of the original
    runs, whatever it was.
    """

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        object.__setattr__(self, "args", args)
        object.__setattr__(self, "kwargs", kwargs)
        object.__setattr__(self, "state", None)
        object.__setattr__(self, "items", [])
        return self

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        object.__setattr__(self, "state", state)

    def __setattr__(self, name, value):  # BUILD with a (dict, slots) state sets attributes: record them
        self.items.append((name, value))

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def append(self, value):
        self.items.append(value)

    def extend(self, values):
        self.items.extend(values)

    def __call__(self, *args, **kwargs):
        return _inert_type("<call>", type(self).__qualname__)(*args, **kwargs)

    def __repr__(self):
        return f"<inert stand-in for {type(self).__qualname__}>"


def _inert_type(module: str, name: str) -> type:
    """A fresh inert class standing in for ``module.name`` (fresh, so that nothing is shared between lookups)."""
    return _InertType(f"{module}.{name}", (_Inert,), {"__module__": __name__, "__qualname__": f"{module}.{name}"})


def _resolve_global(module: str, name: str):
    """What a GLOBAL opcode gets: an allow-listed stand-in, an inert stand-in, or a refusal (never an import)."""
    target = _ALLOWED.get((module, name))
    if target is not None:
        # a fresh wrapper per lookup: the BUILD opcode can set attributes (e.g. __defaults__) on what it gets
        return functools.partial(target) if isinstance(target, types.FunctionType) else target
    if (module, name) in _INERT_EXCEPTIONS:
        return _inert_type(module, name)
    if module.split(".", 1)[0] in _REFUSED_MODULES or name in _REFUSED_NAMES or name.startswith("__"):
        raise _Refused(f"{module}.{name}")
    return _inert_type(module, name)


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that never imports: globals resolve through ``_resolve_global``, storage ids to ``_Storage``."""

    def __init__(self, file, persistent_load: Optional[Callable[[Any], Any]] = None):
        super().__init__(file)
        self._persistent_load = persistent_load

    def find_class(self, module, name):
        return _resolve_global(str(module), str(name))

    def persistent_load(self, pid):
        if self._persistent_load is None:
            raise pickle.UnpicklingError("unexpected persistent id")
        return self._persistent_load(pid)


def _storage_from_pid(pid) -> _Storage:
    """Decode ('storage', type, key, location, numel[, legacy view (view_key, offset, numel)])."""
    if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
            and isinstance(pid[1], _StorageType)):
        raise pickle.UnpicklingError(f"unsupported persistent id {str(pid)[:80]}")
    storage = _Storage(str(pid[2]), pid[1].dtype, int(pid[4]))
    view = pid[5] if len(pid) == 6 else None
    if view is not None:
        _view_key, start, numel = view
        storage = storage._replace(numel=int(numel), start=int(start))
    return storage


def _unpickle(path: Path, file, persistent_load=None):
    """Run the restricted unpickler, turning every failure into a one-line ValueError naming the file."""
    try:
        return _RestrictedUnpickler(file, persistent_load).load()
    except _Refused as err:
        raise ValueError(f"{path}: refused to load global '{err}' (not a tensor checkpoint type; "
                         "the file may contain code and is not executed)") from None
    except Exception as err:  # pickle reports corruption through many exception types
        raise ValueError(f"{path}: corrupt pickle data ({type(err).__name__}: {_one_line(err)})") from None


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split())


def _select_tensors(path: Path, obj) -> Dict[str, _TensorRef]:
    """Unwrap {'state_dict': ...} / {'model': ...} containers and keep the tensor entries."""
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: top-level object is a {type(obj).__name__}, not a dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, _TensorRef)}
    if not tensors:
        raise ValueError(f"{path}: no tensors at top level or under 'state_dict'/'model'")
    return tensors


def _to_array(path: Path, name: str, ref: _TensorRef, raw: bytes, byteorder: str) -> np.ndarray:
    """Copy the strided view ``ref`` out of the root storage bytes ``raw`` into a C-contiguous array."""
    storage_item = np.dtype(_RAW_DTYPES[ref.storage.dtype]).itemsize
    begin, nbytes = ref.storage.start * storage_item, ref.storage.numel * storage_item
    if begin + nbytes > len(raw):
        raise ValueError(f"{path}: storage record {ref.storage.key} holds {len(raw)} bytes, "
                         f"tensor '{name}' needs {begin + nbytes}")
    dtype = np.dtype(_RAW_DTYPES[ref.dtype]).newbyteorder(byteorder)
    declared = math.prod(ref.size) * dtype.itemsize  # Python ints: no overflow
    if declared > max(len(raw), os.path.getsize(path)):  # e.g. a huge shape over zero strides
        raise ValueError(f"{path}: tensor '{name}' declares {declared} bytes of data, more than the file holds")
    flat = np.frombuffer(raw, dtype=dtype, count=nbytes // dtype.itemsize, offset=begin)
    if 0 in ref.size:
        array = np.zeros(ref.size, dtype)
    else:
        last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride))
        if last >= flat.size:
            raise ValueError(f"{path}: tensor '{name}' reaches element {last} of a {flat.size}-element storage")
        strides = tuple(s * dtype.itemsize for s in ref.stride)
        array = np.lib.stride_tricks.as_strided(flat[ref.offset:], ref.size, strides, writeable=False)
    array = array.astype(dtype.newbyteorder("="), order="C")  # a C-ordered copy in native byte order
    if ref.dtype == "bfloat16":
        array = (array.astype(np.uint32) << 16).view(np.float32)
    return array


def _read_zip(path: Path) -> Dict[str, np.ndarray]:
    """Read the zip format: data.pkl, then only the storage records the selected tensors use."""
    try:
        with zipfile.ZipFile(path) as archive:
            pickles = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if not pickles:
                raise ValueError(f"{path}: zip archive has no <archive>/data.pkl record, not a torch checkpoint")
            prefix = pickles[0][: -len("data.pkl")]
            byteorder = "<"
            if prefix + "byteorder" in archive.namelist():
                byteorder = {b"little": "<", b"big": ">"}.get(archive.read(prefix + "byteorder").strip(), "<")
            with archive.open(pickles[0]) as file:
                obj = _unpickle(path, file, _storage_from_pid)
            arrays = {}
            for name, ref in _select_tensors(path, obj).items():
                record = f"{prefix}data/{ref.storage.key}"
                try:
                    raw = archive.read(record)
                except KeyError:
                    raise ValueError(f"{path}: missing storage record {record} for tensor '{name}'") from None
                arrays[name] = _to_array(path, name, ref, raw, byteorder)
            return arrays
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as err:
        raise ValueError(f"{path}: truncated or corrupt zip archive ({_one_line(err)})") from None


class _BoundedReader:
    """A file for pickletools' scan whose reads never ask for more bytes than the file has left."""

    def __init__(self, file, size: int):
        self._file, self._size = file, size

    def read(self, n: int = -1) -> bytes:
        left = max(self._size - self._file.tell(), 0)
        return self._file.read(left if n is None or n < 0 or n > left else n)

    def readline(self) -> bytes:
        return self._file.readline()


def _check_declared_sizes(path: Path, file, size: int) -> None:
    """Scan the next pickle's opcodes (building nothing): a length it declares beyond the file's end is an error.

    The unpickler allocates a declared length before it reads, so a 100-byte file could ask for terabytes.
    """
    start = file.tell()
    try:
        for _ in pickletools.genops(_BoundedReader(file, size)):
            pass
    except Exception as err:  # pickletools reports short or malformed data as ValueError (mostly)
        raise ValueError(f"{path}: corrupt pickle data ({type(err).__name__}: {_one_line(err)[:200]})") from None
    file.seek(start)


def _read_legacy(path: Path) -> Dict[str, np.ndarray]:
    """Read the legacy stream format; storages follow the pickle, so tensors are read after it."""
    storage_dtypes: Dict[str, str] = {}

    def persistent_load(pid):
        storage = _storage_from_pid(pid)
        storage_dtypes[storage.key] = storage.dtype
        return storage

    with open(path, "rb") as file:
        size = os.fstat(file.fileno()).st_size

        def load(persistent=None):  # the pickle's declared lengths are checked against the file first
            _check_declared_sizes(path, file, size)
            return _unpickle(path, file, persistent)

        if load() != _LEGACY_MAGIC:
            raise ValueError(f"{path}: not a PyTorch checkpoint (no zip archive and no legacy magic number)")
        if load() != _LEGACY_PROTOCOL:
            raise ValueError(f"{path}: unsupported legacy torch protocol version")
        sys_info = load()
        byteorder = "<" if not isinstance(sys_info, dict) or sys_info.get("little_endian", True) else ">"
        tensors = _select_tensors(path, load(persistent_load))
        keys = load()
        if not isinstance(keys, list) or set(map(str, keys)) != set(storage_dtypes):
            raise ValueError(f"{path}: storage key list does not match the storages the pickle references")
        needed = {ref.storage.key for ref in tensors.values()}
        raws = {}
        for key in map(str, keys):
            header = file.read(8)
            if len(header) < 8:
                raise ValueError(f"{path}: truncated before storage record {key}")
            nbytes = int.from_bytes(header, "little" if byteorder == "<" else "big")
            nbytes *= np.dtype(_RAW_DTYPES[storage_dtypes[key]]).itemsize
            left = size - file.tell()
            if nbytes > left:  # checked before reading: a declared size never allocates beyond the file
                raise ValueError(f"{path}: storage record {key} declares {nbytes} bytes, the file has {left} left "
                                 "(truncated or corrupt)")
            if key in needed:
                raws[key] = file.read(nbytes)
                if len(raws[key]) < nbytes:
                    raise ValueError(f"{path}: truncated inside storage record {key}")
            else:
                file.seek(nbytes, 1)
    return {name: _to_array(path, name, ref, raws[ref.storage.key], byteorder) for name, ref in tensors.items()}


def read_pth(path) -> Dict[str, np.ndarray]:
    """Return the state dict of a torch checkpoint (zip or legacy format) as {name: numpy array}.

    A {'state_dict': ...} or {'model': ...} wrapper is unwrapped; non-tensor entries are ignored.
    bfloat16 tensors come back as float32. Every failure is a one-line ValueError naming the file.
    """
    path = Path(path)
    try:
        with open(path, "rb") as file:
            head = file.read(4)
    except OSError as err:
        raise ValueError(f"{path}: cannot read ({_one_line(err)})") from None
    if head.startswith(b"PK"):
        return _read_zip(path)
    if head.startswith(b"\x80"):  # pickle PROTO opcode: the legacy format's leading magic number
        return _read_legacy(path)
    if tarfile.is_tarfile(path):
        raise ValueError(f"{path}: the tar-based torch < 0.4 checkpoint format is not supported")
    raise ValueError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor the legacy torch format)")
