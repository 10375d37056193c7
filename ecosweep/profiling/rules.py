"""The kernel classes' rule table: which class (``KERNEL_CLASSES``) a kernel belongs to, decided by one ordered
table (``RULES``) on the kernel's name, the op that launched it and the ops and module scopes around that op."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Tuple


@dataclass(frozen=True)
class KernelRule:
    """A kernel belongs to ``kernel_class`` when every pattern given matches (``re.search``): ``kernel`` in
    its name, ``op`` in the name of the operator that launched it, ``within`` in the name of one of the
    operators or profiler scopes around that operator."""

    kernel_class: str
    kernel: str = ""
    op: str = ""
    within: str = ""


_BNB = r"^bitsandbytes::"
_INT8_QUANT_OPS = _BNB + r"(int8_vectorwise_quant|int8_double_quant)"
_GEMM_OPS = r"^aten::(mm|addmm|bmm|baddbmm|matmul|linear|addmv|mv)$"
_GEMM_KERNELS = (r"gemm|gemv|cutlass|xmma|cublas|nvjet|tensorop|sgemm|hgemm|splitkreduce|s16816|s1688|"
                 r"triton_(tem|mm)_|_mm_")

# Ordered: the first rule that matches decides. Specific (quantization) rules come before generic ones.
RULES: Tuple[KernelRule, ...] = (
    # bitsandbytes: its custom ops, by the op that launched the kernel or one around it
    KernelRule("int8_gemm", within=_BNB + r"int8_linear_matmul"),
    KernelRule("int8_gemm", op=_BNB + r"int8_linear_matmul"),
    # an int8 GEMM kernel by its name, whatever scope it ran in (the profiler can link one to the wrong op)
    KernelRule("int8_gemm", kernel=r"s8s8|i8i8|imma|igemm|int8_gemm|_i\d{4,5}gemm|i16832gemm"),
    KernelRule("dequantize", within=_BNB + r"(int8_mm_dequant|int8_vectorwise_dequant)"),
    KernelRule("act_quantize", op=_INT8_QUANT_OPS),
    KernelRule("act_quantize", kernel=r"kInt8VectorQuant|kQuantize|int8_vectorwise_quant"),
    KernelRule("dequantize", kernel=r"kdequant_mm|int8_mm_dequant"),
    KernelRule("llm_int8_outliers", within=_INT8_QUANT_OPS),
    KernelRule("llm_int8_side_gemm", within=_BNB + r"int8_mixed_scaled_mm", op=_GEMM_OPS),
    KernelRule("llm_int8_outliers", within=_BNB + r"int8_mixed_scaled_mm"),
    # bitsandbytes' 4-bit matmul above batch 1 dequantizes the weight, then runs an fp16 GEMM on it (aten::mm)
    KernelRule("dense_gemm", within=_BNB + r"gemm_4bit", op=_GEMM_OPS),
    KernelRule("nf4_fp4", within=_BNB + r"(gemm_4bit|dequantize_4bit|dequantize_blockwise)"),
    # by name (captured graphs have no ops): the fused 4-bit GEMV/GEMM kernels (gemm_4bit_simt,
    # gemm_4bit_sm80_m16n8k16, kgemm_4bit_inference_naive) before the generic "gemm" of dense GEMMs
    KernelRule("nf4_fp4", kernel=r"gemm_4bit|kDequantize|gemv_4bit|dequantize_4bit"),
    # int4 weight-only: tinygemm (aten._weight_int4pack_mm; torchao int4 with tile_packed_to_4d)
    KernelRule("int4_gemm", op=r"^aten::_weight_int4pack_mm"),
    KernelRule("int4_gemm", kernel=r"tinygemm|int4pack|_int4_mm|int4_gemm"),
    # torch's quantized matmuls (torchao int8 dynamic: torch._int_mm; fp8: torch._scaled_mm)
    KernelRule("int8_gemm", op=r"^aten::_int_mm$"),
    KernelRule("fp8_gemm", op=r"^aten::_scaled_mm$"),
    KernelRule("fp8_gemm", kernel=r"e4m3|e5m2|f8f8|fp8_gemm|_fp8_"),
    # attention kernels by name (before GEMMs: FlashAttention's names carry cutlass types)
    KernelRule("attention", kernel=r"flash|fmha|attention|attn|sdpa|softmax|_efficient_"),
    # dense matmuls: by name (cuBLAS, CUTLASS, Triton templates) or by the op
    KernelRule("dense_gemm", kernel=_GEMM_KERNELS),
    KernelRule("dense_gemm", op=_GEMM_OPS),
    # attention by op
    KernelRule("attention", op=r"^aten::(_?scaled_dot_product|_flash_attention|_efficient_attention|_softmax|softmax)"),
    # normalisation: fused kernels by name, or anything inside a norm module (eager scopes)
    KernelRule("norm", kernel=r"rms_?norm|layer_?norm|_norm_|rsqrt"),
    KernelRule("norm", op=r"^aten::(native_layer_norm|layer_norm|rms_norm|_fused_rms_norm)"),
    KernelRule("norm", within=r"^ecosweep::module::\w*Norm"),
    # copies and data movement
    KernelRule("copy", kernel=r"(?i)memcpy|memset|copy|CatArray|cat_|index_?select|gather|scatter|index_put|"
                              r"indexing|direct_copy|transpose|permute"),
    KernelRule("copy", op=r"^aten::(copy_|cat|index_select|index|index_put_|_to_copy|to|contiguous|clone|"
                          r"gather|scatter_|index_copy_|slice_scatter|narrow_copy|_unsafe_index|fill_|zero_)$"),
    # what is left inside an attention module (eager scopes): rotary embedding, scaling
    KernelRule("attention", within=r"^ecosweep::module::\w*Attention"),
    # elementwise and reductions
    KernelRule("elementwise", kernel=r"(?i)elementwise|vectorized|unrolled|reduce_kernel|reduction|triton_poi|"
                                     r"triton_red|triton_per|pointwise|silu|gelu|act_and_mul|argmax|arange|"
                                     r"where|compare|cumsum|sort|topk|fill|mul_|add_|_kernel_impl|launch_"),
    KernelRule("elementwise", op=r"^aten::"),
)

# The classes of kernels that do a linear layer's matmul (profile_matmul_kernel is the top one of these).
MATMUL_CLASSES = ("dense_gemm", "int8_gemm", "fp8_gemm", "int4_gemm", "nf4_fp4", "llm_int8_side_gemm")

LAUNCH_APIS = re.compile(r"^(cudaLaunchKernel|cudaLaunchKernelExC|cuLaunchKernel|cuLaunchKernelEx|"
                         r"cudaLaunchCooperativeKernel|cudaGraphLaunch|cuGraphLaunch)")
_COMPILED_RULES = [(r.kernel_class, *(re.compile(p) if p else None for p in (r.kernel, r.op, r.within)))
                   for r in RULES]


@dataclass(frozen=True)
class KernelRecord:
    """One kernel of a traced call: its name, start and duration (microseconds), the operator that launched
    it and the names of the operators and profiler scopes around it (outermost first, that operator last)."""

    name: str
    start_us: float
    duration_us: float
    op: str = ""
    within: Tuple[str, ...] = ()


def classify(record: KernelRecord) -> str:
    """The record's kernel class (``KERNEL_CLASSES``): the first rule of ``RULES`` that matches."""
    return _classify(record.name, record.op, record.within)


@functools.lru_cache(maxsize=None)
def _classify(name: str, launched_by: str, within_names: Tuple[str, ...]) -> str:
    # cached: a call's tens of thousands of kernels are a few hundred distinct (name, op, scopes)
    for kernel_class, kernel, op, within in _COMPILED_RULES:
        if kernel and not kernel.search(name):
            continue
        if op and not op.search(launched_by):
            continue
        if within and not any(within.search(n) for n in within_names):
            continue
        return kernel_class
    return "unknown"
