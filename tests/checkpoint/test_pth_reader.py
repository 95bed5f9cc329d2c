"""read_pth: the official fixture bit for bit, and hand-written zip and legacy torch files (no torch needed)."""
import collections
import io
import pickle
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from litehrnet.checkpoint.pth_reader import read_pth

OFFICIAL = SHARED / 'fixtures' / 'official'
TAG = 'litehrnet_18_coco_256x192_s0_1x3x256x192'


class Global:
    """A reference to ``module.name`` that pickles as a bare GLOBAL opcode (the module need not exist)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):
        raise AssertionError("a Global is only ever pickled")


class Storage:
    """A torch storage record: raw bytes under ``key`` holding ``numel`` elements of ``storage_type``."""

    def __init__(self, key, storage_type, numel, view=None, module='torch'):
        self.key, self.numel, self.view = key, numel, view
        self.type = Global(module, storage_type)


class Tensor:
    """Pickles like a torch tensor: _rebuild_tensor_v2(storage, offset, size, stride, ...) or v3 with a dtype."""

    def __init__(self, storage, offset, size, stride, dtype=None):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())
        self.dtype = dtype

    def __reduce__(self):
        if self.dtype is None:
            return Global('torch._utils', '_rebuild_tensor_v2'), self.args
        return Global('torch._utils', '_rebuild_tensor_v3'), self.args + (Global('torch', self.dtype),)


class Parameter:
    """Pickles like torch.nn.Parameter: _rebuild_parameter(tensor, requires_grad, hooks)."""

    def __init__(self, tensor):
        self.tensor = tensor

    def __reduce__(self):
        return Global('torch._utils', '_rebuild_parameter'), (self.tensor, True, collections.OrderedDict())


class Evil:
    """What a malicious checkpoint holds: os.system('touch <marker>') as a REDUCE."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return Global('os', 'system'), (f'touch {self.marker}',)


class TorchPickler(pickle._Pickler):
    """Protocol-2 pickler (as torch.save) writing Global as GLOBAL and storages as persistent ids.

    The pure-Python pickler is used because the C one insists on importing the module of every global.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def __init__(self, file, legacy=False):
        super().__init__(file, protocol=2)
        self.legacy = legacy

    def save_global_ref(self, obj):
        self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode('ascii'))
        self.memoize(obj)

    dispatch[Global] = save_global_ref

    def persistent_id(self, obj):
        if not isinstance(obj, Storage):
            return None
        pid = ('storage', obj.type, obj.key, 'cpu', obj.numel)
        return pid + (obj.view,) if self.legacy else pid


def write_zip(path, obj, storages, byteorder='little', pickle_bytes=None):
    """A torch >= 1.6 checkpoint: <archive>/data.pkl, version, byteorder and <archive>/data/<key>."""
    if pickle_bytes is None:
        buffer = io.BytesIO()
        TorchPickler(buffer).dump(obj)
        pickle_bytes = buffer.getvalue()
    with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as archive:
        archive.writestr('archive/data.pkl', pickle_bytes)
        archive.writestr('archive/version', '3\n')
        archive.writestr('archive/byteorder', byteorder)
        for key, raw in storages.items():
            archive.writestr(f'archive/data/{key}', raw)


def write_legacy(path, obj, storages, itemsizes):
    """A pre-1.6 checkpoint: magic, protocol, sys info, the object, storage keys, then count-prefixed storages."""
    with open(path, 'wb') as file:
        for header in (0x1950A86A20F9469CFC6C, 1001,
                       {'protocol_version': 1001, 'little_endian': True,
                        'type_sizes': {'short': 2, 'int': 4, 'long': 8}}):
            pickle.dump(header, file, protocol=2)
        TorchPickler(file, legacy=True).dump(obj)
        keys = sorted(storages)
        pickle.dump(keys, file, protocol=2)
        for key in keys:
            file.write((len(storages[key]) // itemsizes[key]).to_bytes(8, 'little'))
            file.write(storages[key])


BF16_VALUES = np.array([1.0, -2.5, 0.15625, 2.0 ** 120, -0.0], np.float32)  # exact in bfloat16
STORAGE_TYPES = {'0': 'FloatStorage', '1': 'DoubleStorage', '2': 'LongStorage', '3': 'BFloat16Storage',
                 '4': 'BoolStorage', '5': 'UntypedStorage'}


def sample():
    """(checkpoint object, raw storages, item sizes, expected arrays) covering the format's corner cases."""
    base = np.arange(60, dtype=np.float32)
    f64 = np.linspace(-1, 1, 12).reshape(3, 4)
    i64 = np.array([1, -2, 3, 2 ** 40], np.int64)
    u16 = np.array([1, 65535, 7], np.uint16)
    raws = {'0': base.tobytes(), '1': f64.tobytes(), '2': i64.tobytes(),
            '3': (BF16_VALUES.view(np.uint32) >> 16).astype(np.uint16).tobytes(),
            '4': np.array([True, False, True]).tobytes(), '5': u16.tobytes()}
    itemsizes = {'0': 4, '1': 8, '2': 8, '3': 2, '4': 1, '5': 1}
    st = {k: Storage(k, STORAGE_TYPES[k], len(raws[k]) // itemsizes[k],
                     module='torch.storage' if k == '5' else 'torch') for k in raws}
    state_dict = collections.OrderedDict([
        # base.reshape(6, 10)[1:, 2:7:2].T: a transposed, strided view starting at element 12
        ('noncontig', Tensor(st['0'], 12, (3, 5), (2, 10))),
        ('row', Tensor(st['0'], 20, (10,), (1,))),  # a second view of the same storage
        ('f64', Tensor(st['1'], 0, (3, 4), (4, 1))),
        ('i64', Tensor(st['2'], 0, (4,), (1,))),
        ('scalar', Tensor(st['2'], 3, (), ())),
        ('bf16', Tensor(st['3'], 0, (5,), (1,))),
        ('mask', Tensor(st['4'], 0, (3,), (1,))),
        ('u16', Tensor(st['5'], 0, (3,), (1,), dtype='uint16')),
        ('weight', Parameter(Tensor(st['0'], 0, (2, 3), (3, 1)))),
        ('empty', Tensor(st['0'], 0, (0, 3), (3, 1))),
    ])
    expected = {
        'noncontig': base.reshape(6, 10)[1:, 2:7:2].T, 'row': base[20:30], 'f64': f64, 'i64': i64,
        'scalar': np.array(2 ** 40), 'bf16': BF16_VALUES, 'mask': np.array([True, False, True]), 'u16': u16,
        'weight': base[:6].reshape(2, 3), 'empty': np.zeros((0, 3), np.float32),
    }
    checkpoint = {'state_dict': state_dict,
                  'meta': {'epoch': 3, 'best_score': np.float64(0.5), 'config': 'model = dict()'},
                  'optimizer': {'state': {0: {'exp_avg': Tensor(st['1'], 0, (2,), (1,))}}}}
    return checkpoint, raws, itemsizes, expected


def write_sample(path, fmt, obj=None):
    checkpoint, raws, itemsizes, expected = sample()
    obj = checkpoint if obj is None else obj
    if fmt == 'zip':
        write_zip(path, obj, raws)
    else:
        write_legacy(path, obj, raws, itemsizes)
    return expected


def assert_same(arrays, expected):
    assert list(arrays) == list(expected)
    for name, want in expected.items():
        got = arrays[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        assert got.tobytes() == np.ascontiguousarray(want).tobytes(), name
        assert got.flags.c_contiguous and got.flags.writeable, name


def test_official_fixture_bit_equal():
    pth, npz = OFFICIAL / f'{TAG}.pth', OFFICIAL / f'{TAG}_params.npz'
    if not pth.is_file():
        pytest.skip(f"shared fixtures not found: {pth}")
    arrays = read_pth(pth)
    with np.load(npz) as reference:
        assert list(arrays) == list(reference.files)
        for name in reference.files:
            want = reference[name]
            assert arrays[name].dtype == want.dtype and arrays[name].shape == want.shape, name
            assert arrays[name].tobytes() == want.tobytes(), name


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_state_dict_wrapper_strides_and_dtypes(tmp_path, fmt):
    expected = write_sample(tmp_path / 'model.pth', fmt)
    assert_same(read_pth(tmp_path / 'model.pth'), expected)


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_bare_and_model_wrapped_state_dicts(tmp_path, fmt):
    checkpoint, *_ = sample()
    for name, obj in [('bare', checkpoint['state_dict']), ('model', {'model': checkpoint['state_dict']})]:
        expected = write_sample(tmp_path / f'{name}.pth', fmt, obj)
        assert_same(read_pth(tmp_path / f'{name}.pth'), expected)


def test_big_endian_storages(tmp_path):
    values = np.array([1.5, -2.0, 3.25], np.float32)
    write_zip(tmp_path / 'be.pth', {'w': Tensor(Storage('0', 'FloatStorage', 3), 0, (3,), (1,))},
              {'0': values.astype('>f4').tobytes()}, byteorder='big')
    np.testing.assert_array_equal(read_pth(tmp_path / 'be.pth')['w'], values)


def test_legacy_storage_view(tmp_path):
    """Pre-1.0 files could reference a view (view_key, offset, numel) of a root storage."""
    base = np.arange(10, dtype=np.float32)
    view = Storage('0', 'FloatStorage', 10, view=('0v', 4, 5))
    write_legacy(tmp_path / 'view.pth', {'w': Tensor(view, 1, (2, 2), (2, 1))}, {'0': base.tobytes()}, {'0': 4})
    np.testing.assert_array_equal(read_pth(tmp_path / 'view.pth')['w'], base[5:9].reshape(2, 2))


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
def test_malicious_global_is_refused_unexecuted(tmp_path, fmt):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    write_sample(path, fmt, {'state_dict': {'w': Evil(marker)}})
    with pytest.raises(ValueError) as err:
        read_pth(path)
    message = str(err.value)
    assert 'os.system' in message and str(path) in message and '\n' not in message
    assert not marker.exists()


def test_pickle_cannot_alter_the_reader(tmp_path):
    """BUILD on an allowed global (here setting its __defaults__) must not reach the reader's own functions."""
    from litehrnet.checkpoint import pth_reader
    before = pth_reader._rebuild_tensor_v2.__defaults__
    # GLOBAL torch._utils._rebuild_tensor_v2; state (None, {'__defaults__': (1,)}); BUILD
    build = b'\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__K\x01\x85s\x86b.'
    write_zip(tmp_path / 'build.pth', None, {}, pickle_bytes=build)
    expect_error(tmp_path / 'build.pth', 'corrupt pickle data')
    assert pth_reader._rebuild_tensor_v2.__defaults__ == before


def expect_error(path, *words):
    with pytest.raises(ValueError) as err:
        read_pth(path)
    message = str(err.value)
    assert str(path) in message and '\n' not in message, message
    for word in words:
        assert word in message, message


def test_not_a_torch_file(tmp_path):
    (tmp_path / 'text.pth').write_text('hello, not a checkpoint\n')
    expect_error(tmp_path / 'text.pth', 'not a PyTorch checkpoint')
    (tmp_path / 'plain.pkl').write_bytes(pickle.dumps({'a': 1}, protocol=2))
    expect_error(tmp_path / 'plain.pkl', 'not a PyTorch checkpoint')
    expect_error(tmp_path / 'missing.pth', 'cannot read')


@pytest.mark.parametrize('fmt', ['zip', 'legacy'])
@pytest.mark.parametrize('cut', [1, 40])
def test_truncated_file(tmp_path, fmt, cut):
    path = tmp_path / 'model.pth'
    write_sample(path, fmt)
    path.write_bytes(path.read_bytes()[:-cut])
    expect_error(path, 'truncated')


def test_corrupt_zip_member(tmp_path):
    path = tmp_path / 'model.pth'
    write_sample(path, 'zip')
    data = bytearray(path.read_bytes())
    data[data.index(sample()[1]['1']) + 3] ^= 0xFF  # a byte inside the float64 storage: its CRC fails
    path.write_bytes(bytes(data))
    expect_error(path, 'corrupt')


def test_missing_storage_record(tmp_path):
    checkpoint, raws, _, _ = sample()
    del raws['2']
    write_zip(tmp_path / 'model.pth', checkpoint, raws)
    expect_error(tmp_path / 'model.pth', 'missing storage record archive/data/2')


def test_tensor_beyond_its_storage(tmp_path):
    raw = {'0': np.zeros(4, np.float32).tobytes()}
    write_zip(tmp_path / 'view.pth', {'w': Tensor(Storage('0', 'FloatStorage', 4), 2, (3,), (1,))}, raw)
    expect_error(tmp_path / 'view.pth', "tensor 'w' reaches element 4 of a 4-element storage")
    write_zip(tmp_path / 'short.pth', {'w': Tensor(Storage('0', 'FloatStorage', 8), 0, (8,), (1,))}, raw)
    expect_error(tmp_path / 'short.pth', 'storage record 0 holds 16 bytes')


def test_no_tensors(tmp_path):
    write_zip(tmp_path / 'meta.pth', {'meta': {'epoch': 1}}, {})
    expect_error(tmp_path / 'meta.pth', 'no tensors')


# mmengine files pickle objects that are not tensors (HistoryBuffer, numpy arrays, Counter, bound methods
# through __builtin__.getattr, bytes through _codecs.encode). They become inert stand-ins.

class HistoryBuffer:
    """Pickles as mmengine's: GLOBAL mmengine.logging.history_buffer.HistoryBuffer, NEWOBJ, BUILD(state)."""

    def __init__(self):
        self.max_length = 1000000
        self._log_history = np.array([0.5, 0.25])
        self._count_history = np.array([1, 1])

    def min(self):
        raise AssertionError("never called")


HistoryBuffer.__module__ = 'mmengine.logging.history_buffer'


class MMEnginePickler(TorchPickler):
    """TorchPickler that writes the GLOBAL of any class or function without importing its module."""

    def save_global(self, obj, name=None):
        module, qualname = obj.__module__, name or obj.__qualname__
        module = {'builtins': '__builtin__'}.get(module, module)  # protocol 2, as torch.save writes it
        self.write(pickle.GLOBAL + f'{module}\n{qualname}\n'.encode('ascii'))
        self.memoize(obj)

    dispatch = dict(TorchPickler.dispatch)
    dispatch[type] = save_global
    dispatch[types.FunctionType] = save_global
    dispatch[types.BuiltinFunctionType] = save_global

    def save_method(self, obj):  # a bound method: getattr(instance, name), as the C pickler writes it
        self.save_reduce(getattr, (obj.__self__, obj.__name__), obj=obj)

    dispatch[types.MethodType] = save_method


def write_mmengine_like(path, meta):
    checkpoint, raws, _, expected = sample()
    buffer = io.BytesIO()
    MMEnginePickler(buffer).dump({'meta': meta, 'state_dict': checkpoint['state_dict'],
                                  'message_hub': {'log_scalars': {'train/lr': HistoryBuffer()}}})
    write_zip(path, None, raws, pickle_bytes=buffer.getvalue())
    return expected


def test_mmengine_objects_become_inert_stand_ins(tmp_path):
    hub = HistoryBuffer()
    meta = {'dataset_meta': {'flip_indices': np.array([0, 2, 1], np.int64), 'sigmas': np.array([0.026])},
            'milestones': collections.Counter({170: 1, 200: 1}), 'statistics': {'min': hub.min}, 'hub': hub}
    path = tmp_path / 'mmengine.pth'
    expected = write_mmengine_like(path, meta)
    data = (path.read_bytes())
    for name in (b'HistoryBuffer', b'_reconstruct', b'getattr', b'_codecs', b'Counter'):
        assert name in data  # the file really names each of them
    assert_same(read_pth(path), expected)


def test_getattr_and_encode_stand_ins_are_not_the_real_functions():
    import builtins
    import codecs
    from litehrnet.checkpoint import pth_reader
    getattr_ = pth_reader._resolve_global('__builtin__', 'getattr')
    encode = pth_reader._resolve_global('_codecs', 'encode')
    assert getattr_ is not builtins.getattr and encode is not codecs.encode
    attr = getattr_(os_module_stand_in := pth_reader._resolve_global('mmengine.x', 'Thing'), '__class__')
    assert isinstance(attr, pth_reader._Inert) and attr.args == (os_module_stand_in, '__class__')
    assert not isinstance(encode('abc', 'latin1'), bytes)
    # two lookups never share a class: nothing one pickle does to its stand-in reaches another
    assert pth_reader._resolve_global('a.b', 'C') is not pth_reader._resolve_global('a.b', 'C')


class Call:
    """Pickles as a REDUCE of ``func`` (a Global, or another Call) with ``args``."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args

    def __call__(self, *args):
        raise AssertionError("a Call is only ever pickled")


@pytest.mark.parametrize('gadget', ['via-function-globals', 'via-builtins-import'])
def test_getattr_and_encode_cannot_reach_os_system(tmp_path, gadget):
    """Pickles that reach os.system through getattr (and spell the command through _codecs.encode).

    With the real getattr both would run the command: the first walks from a stand-in's method to the
    reader module's globals, the second from getattr itself to the builtins' __import__. Nothing runs.
    """
    marker = tmp_path / 'pwned'
    getattr_, encode = Global('__builtin__', 'getattr'), Global('_codecs', 'encode')
    command = Call(Call(getattr_, Call(encode, f'touch {marker}', 'latin1'), 'decode'), 'latin1')
    if gadget == 'via-function-globals':  # getattr(getattr(<class>, '__init__'), '__globals__')['os']
        globals_ = Call(getattr_, Call(getattr_, Global('mmengine.logging.history_buffer', 'HistoryBuffer'),
                                       '__init__'), '__globals__')
        os_module = Call(Call(getattr_, globals_, '__getitem__'), 'os')
    else:  # getattr(getattr(getattr, '__self__'), '__import__')('os')
        os_module = Call(Call(getattr_, Call(getattr_, getattr_, '__self__'), '__import__'), 'os')
    evil = Call(Call(getattr_, os_module, 'system'), command)
    checkpoint, raws, _, expected = sample()
    write_zip(tmp_path / 'evil.pth', {'state_dict': checkpoint['state_dict'], 'meta': {'x': evil}}, raws)
    assert_same(read_pth(tmp_path / 'evil.pth'), expected)
    assert not marker.exists()


@pytest.mark.parametrize('module, name', [
    ('os', 'system'), ('posix', 'system'), ('nt', 'system'), ('subprocess', 'Popen'), ('subprocess', 'check_output'),
    ('builtins', 'eval'), ('builtins', 'exec'), ('__builtin__', 'eval'), ('builtins', '__import__'),
    ('builtins', 'getattr_'), ('importlib', 'import_module'), ('runpy', 'run_path'), ('pickle', 'loads'),
    ('marshal', 'loads'), ('types', 'FunctionType'), ('operator', 'attrgetter'), ('functools', 'partial'),
    ('numpy.testing._private.utils', 'runstring'), ('torch', 'load'), ('torch.jit', 'load'), ('shutil', 'rmtree'),
    ('socket', 'socket'), ('ctypes', 'CDLL'), ('sys', 'modules'), ('mmengine.x', 'eval'), ('code', 'interact'),
    ('copyreg', '_reconstructor'), ('codecs', 'decode')])
def test_code_running_globals_are_refused(tmp_path, module, name):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    write_zip(path, {'state_dict': {'w': Call(Global(module, name), f'touch {marker}')}}, {})
    expect_error(path, 'refused', f'{module}.{name}')
    assert not marker.exists()


def test_stand_in_classes_cannot_be_altered(tmp_path):
    """BUILD on a stand-in class (setting an attribute of the class itself) is refused."""
    build = (b'\x80\x02cmmengine.x\nThing\n'  # GLOBAL
             b'N}X\x0c\x00\x00\x00__setstate__K\x01s\x86b.')  # state (None, {'__setstate__': 1}), BUILD
    write_zip(tmp_path / 'build.pth', None, {}, pickle_bytes=build)
    expect_error(tmp_path / 'build.pth', 'corrupt pickle data', '__setstate__')


def test_archive_prefix_of_any_name(tmp_path):
    """torch.save names the zip folder after the file (or 'archive' when saving to a buffer, as mmengine)."""
    checkpoint, raws, _, expected = sample()
    buffer = io.BytesIO()
    TorchPickler(buffer).dump(checkpoint)
    with zipfile.ZipFile(tmp_path / 'model.pth', 'w') as archive:
        archive.writestr('my_model/data.pkl', buffer.getvalue())
        for key, raw in raws.items():
            archive.writestr(f'my_model/data/{key}', raw)
    assert_same(read_pth(tmp_path / 'model.pth'), expected)


def test_protocol_2_builtin_containers(tmp_path):
    """torch.save (protocol 2) spells builtins '__builtin__': a set in the meta is read as the real set."""
    checkpoint, raws, _, expected = sample()
    buffer = io.BytesIO()
    MMEnginePickler(buffer).dump({'state_dict': checkpoint['state_dict'], 'meta': {'keys': {1, 2}}})
    assert b'__builtin__\nset' in buffer.getvalue()
    write_zip(tmp_path / 'set.pth', None, raws, pickle_bytes=buffer.getvalue())
    assert_same(read_pth(tmp_path / 'set.pth'), expected)
