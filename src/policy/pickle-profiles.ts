/**
 * Pickle import allowlists. `torch-weights` is what torch.load(weights_only=True) accepts
 * (torch/_weights_only_unpickler.py, _get_allowed_globals), as gathered in
 * ../shared/reference/scanning.md §1.6; `torch-numpy` adds the numpy globals common in
 * Hub checkpoints (rng_state.pth). Every other import refuses the file.
 */
const DTYPES = [
  'float32', 'float', 'float64', 'double', 'float16', 'half', 'bfloat16', 'complex32', 'chalf', 'complex64', 'cfloat', 'complex128', 'cdouble',
  'uint8', 'uint16', 'uint32', 'uint64', 'int8', 'int16', 'short', 'int32', 'int', 'int64', 'long', 'bool',
  'quint8', 'qint8', 'qint32', 'quint4x2', 'quint2x4', 'float8_e4m3fn', 'float8_e5m2', 'float8_e4m3fnuz', 'float8_e5m2fnuz', 'float8_e8m0fnu', 'float4_e2m1fn_x2',
  'bits8', 'bits16', 'bits1x8', 'bits2x4', 'bits4x2',
  ...[1, 2, 3, 4, 5, 6, 7].flatMap((n) => [`uint${n}`, `int${n}`]),
];
const STORAGES = ['Long', 'Float', 'Half', 'QUInt2x4', 'QUInt4x2', 'QInt32', 'QInt8', 'QUInt8', 'ComplexFloat', 'ComplexDouble', 'Double', 'BFloat16', 'Bool', 'Char', 'Short', 'Int', 'Byte'];
const TENSORS = ['Double', 'Float', 'Half', 'BFloat16', 'Long', 'Int', 'Short', 'Char', 'Byte', 'Bool'];
const REBUILD = [
  'parameter', 'parameter_with_state', 'qtensor', 'tensor', 'tensor_v2', 'tensor_v3', 'sparse_tensor', 'meta_tensor_no_storage',
  'wrapper_subclass', 'device_tensor_from_numpy', 'device_tensor_from_cpu_tensor', 'nested_tensor',
];

const TORCH_WEIGHTS = new Set<string>([
  'collections.OrderedDict',
  'collections.Counter',
  'torch.nn.parameter.Parameter',
  'torch.serialization._get_layout',
  'torch.Size',
  'torch.Tensor',
  'torch.device',
  '_codecs.encode',
  'builtins.bytearray',
  'builtins.set',
  'builtins.complex',
  ...DTYPES.map((d) => `torch.${d}`),
  ...TENSORS.map((t) => `torch.${t}Tensor`),
  ...STORAGES.map((s) => `torch.${s}Storage`),
  'torch.storage.TypedStorage',
  'torch.storage.UntypedStorage',
  'torch.UntypedStorage',
  'torch.per_tensor_affine',
  'torch.per_tensor_symmetric',
  'torch.per_channel_affine',
  'torch.per_channel_symmetric',
  'torch.per_channel_affine_float_qparams',
  ...REBUILD.map((r) => `torch._utils._rebuild_${r}`),
  'torch._tensor._rebuild_from_type_v2',
]);

const TORCH_NUMPY = new Set<string>([
  ...TORCH_WEIGHTS,
  'numpy.dtype',
  'numpy.ndarray',
  'numpy.core.multiarray._reconstruct',
  'numpy._core.multiarray._reconstruct',
  'numpy.core.multiarray.scalar',
  'numpy._core.multiarray.scalar',
]);

export const PICKLE_PROFILES: Record<string, Set<string>> = {
  'torch-weights': TORCH_WEIGHTS,
  'torch-numpy': TORCH_NUMPY,
};
