/* kernels/cuda/limits.h — what the CUDA kernels can run, as numbers plain C
 * can read.
 *
 * The kernels take their limits from here, and static_asserts in them tie each
 * figure to the geometry it comes from (kernels/cuda/attention.cu checks the
 * shared-memory formulas against its AttGeom), so the numbers cannot drift
 * from the code. backend_cuda_check (model/backend_cuda_check.c) checks a
 * model configuration against them when the model is created, without CUDA or
 * a GPU, so a configuration the kernels cannot run is refused with a message
 * instead of stopping the program at its first launch.
 *
 * Shared-memory figures are bytes per block; a device offers at most its
 * opt-in limit (cudaDevAttrMaxSharedMemoryPerBlockOptin: 166,912 on an A100,
 * 232,448 on an H100, 101,376 on compute capability 8.6 and 8.9).
 */
#ifndef RETORT_CUDA_LIMITS_H
#define RETORT_CUDA_LIMITS_H

/* ---- attention (kernels/cuda/attention.cu) ----
 * Tiles of 64 queries x 64 keys, HSP wide: the smallest of 16, 32, 64, 128
 * that holds the head size. One block per (b*h, query or key tile), so the
 * tiles of one sequence are the grid's y dimension (at most 65535). */
#define CUDA_ATT_TILE 64
#define CUDA_ATT_MAX_HS 128
#define CUDA_MAX_GRID_Y 65535
#define CUDA_ATT_MAX_T ((long)CUDA_MAX_GRID_Y * CUDA_ATT_TILE)

/* Dynamic shared memory of the three attention kernels at tile width HSP
 * (row strides padded against bank conflicts, as in attention.cu's header):
 * bf16 (64, HSP+8) tiles Q, K, V, dO; fp32 (64, 68) tiles S, dP; bf16 (64, 72)
 * tiles P, dS; the fp32 (64, HSP+4) output tile; fp32 (64) rows lse, D. */
#define CUDA_ATT_H_BYTES(HSP) ((long)CUDA_ATT_TILE * ((HSP) + 8) * 2)
#define CUDA_ATT_S_BYTES ((long)CUDA_ATT_TILE * (CUDA_ATT_TILE + 4) * 4)
#define CUDA_ATT_P_BYTES ((long)CUDA_ATT_TILE * (CUDA_ATT_TILE + 8) * 2)
#define CUDA_ATT_O_BYTES(HSP) ((long)CUDA_ATT_TILE * ((HSP) + 4) * 4)
#define CUDA_ATT_ROW_BYTES ((long)CUDA_ATT_TILE * 4)
#define CUDA_ATT_FWD_SMEM(HSP)                                                             \
    (3 * CUDA_ATT_H_BYTES(HSP) + CUDA_ATT_S_BYTES + CUDA_ATT_P_BYTES + CUDA_ATT_O_BYTES(HSP))
#define CUDA_ATT_BWD_SMEM(HSP)                                                             \
    (4 * CUDA_ATT_H_BYTES(HSP) + 2 * CUDA_ATT_S_BYTES + 2 * CUDA_ATT_P_BYTES +              \
     2 * CUDA_ATT_ROW_BYTES)
#define CUDA_ATT_DQ_SMEM(HSP)                                                              \
    (4 * CUDA_ATT_H_BYTES(HSP) + 2 * CUDA_ATT_S_BYTES + CUDA_ATT_P_BYTES + 2 * CUDA_ATT_ROW_BYTES)

/* ---- decode attention (kernels/cuda/attention_decode.cu) ----
 * 32 lanes x 8 head-size elements per key row. */
#define CUDA_DECODE_MAX_HS 256

/* ---- top-K distillation (kernels/cuda/classifier_kd.cu) ----
 * The support of a row is a V-bit bitmap of 32-bit words in dynamic shared
 * memory, beside the block reductions' static slots (under 1 KB: three
 * reductions of 32 slots of at most 8 bytes, and a flag). */
#define CUDA_KD_BITMAP_BYTES(V) ((((long)(V) + 31) / 32) * 4)
#define CUDA_KD_STATIC_SMEM 1024

#endif
