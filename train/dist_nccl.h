/* train/dist_nccl.h — the NCCL half of train/dist.c, implemented in
 * train/dist_nccl.cu (RETORT_CUDA builds only). Internal: the trainer uses
 * train/dist.h. The rendezvous (unique id from rank 0) and the choice between
 * MPI and NCCL stay in dist.c so this file needs no MPI header.
 */
#ifndef RETORT_DIST_NCCL_H
#define RETORT_DIST_NCCL_H

#include <stddef.h>

#include "train/dist.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DIST_NCCL_ID_BYTES 128 /* NCCL_UNIQUE_ID_BYTES, checked in dist_nccl.cu */

/* element kinds of the staged host collectives */
typedef enum { DIST_HOST_F32, DIST_HOST_F64, DIST_HOST_I64, DIST_HOST_I32_MAX } DistHostKind;

/* cudaSetDevice(device), device from dist_device_index — the same index the
 * CUDA backend gets. 0, or -1 with the error set. */
int dist_nccl_select_device(int device);
/* Rank 0 only: a fresh ncclUniqueId. 0 or -1 (error set). */
int dist_nccl_unique_id(unsigned char id[DIST_NCCL_ID_BYTES]);
/* The communicator and its stream on the current device. 0 or -1 (error set). */
int dist_nccl_init(const unsigned char id[DIST_NCCL_ID_BYTES], int rank, int world,
                   double timeout_s);
void dist_nccl_finalize(void);
/* Seconds without progress before a wait aborts the job (0 = forever). */
void dist_nccl_set_timeout(double timeout_s);
void dist_nccl_abort(void); /* ncclCommAbort, for dist_abort */

void dist_nccl_allreduce_async(void *dev_ptr, size_t n, DistDtype dtype, DistOp op);
void dist_nccl_wait(void);
void dist_nccl_broadcast_pieces(const DistPiece *pieces, int n);
void dist_nccl_gather_pieces(const DistGatherPiece *pieces, int n);
void dist_nccl_reduce_scatter_add(float *src, size_t lo, size_t hi, size_t n, float *shard);

/* Host collectives through NCCL when MPI is not running: copied through a
 * device buffer in rounds. Fatal on failure, as the MPI ones. */
void dist_nccl_host_allreduce(void *buf, size_t count, DistHostKind kind, DistOp op);
void dist_nccl_host_broadcast(void *buf, size_t bytes);
void dist_nccl_host_all_gather_f32(float *buf, size_t n);

#ifdef __cplusplus
}
#endif

#endif
