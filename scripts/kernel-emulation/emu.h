// Just enough of CUDA's execution model to run tensor/src/cuda/kernels.cu on the CPU: every
// CUDA thread of a block is an OS thread, blocks run one after another, __syncthreads is a block
// barrier, __shfl_down_sync exchanges values through per-warp slots guarded by a warp barrier,
// __shared__ variables are statics (one block is alive at a time), atomicAdd is atomic_ref.
// Meant for checking the kernels' index arithmetic and reductions where no GPU exists; not
// for performance.
#pragma once

#include <math.h>

#include <atomic>
#include <barrier>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__ __restrict
#define __shared__ static

struct EmuDim3 {
    unsigned x = 1, y = 1, z = 1;
};

inline thread_local EmuDim3 threadIdx, blockIdx;
inline EmuDim3 blockDim, gridDim;

namespace emu {
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline std::vector<float> shfl_slots;
}  // namespace emu

inline void __syncthreads() { emu::block_barrier->arrive_and_wait(); }

inline float __shfl_down_sync(unsigned, float v, int offset) {
    unsigned t = threadIdx.x;
    auto& bar = *emu::warp_barriers[t / 32];
    emu::shfl_slots[t] = v;
    bar.arrive_and_wait();
    unsigned lane = t & 31;
    float r = (lane + offset < 32 && t + offset < blockDim.x) ? emu::shfl_slots[t + offset] : v;
    bar.arrive_and_wait();
    return r;
}

inline float atomicAdd(float* p, float v) { return std::atomic_ref<float>(*p).fetch_add(v); }

inline float __int_as_float(int i) {
    float f;
    static_assert(sizeof f == sizeof i);
    __builtin_memcpy(&f, &i, sizeof f);
    return f;
}

namespace emu {
// Runs kernel `k` on `grid` blocks of `block` threads (block a multiple of 32).
template <typename... P, typename... A>
void launch(void (*k)(P...), unsigned grid, unsigned block, A... args) {
    gridDim.x = grid;
    blockDim.x = block;
    std::barrier<> bar(block);
    block_barrier = &bar;
    warp_barriers.clear();
    for (unsigned w = 0; w < block / 32; ++w) warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
    shfl_slots.assign(block, 0.0f);
    for (unsigned b = 0; b < grid; ++b) {
        std::vector<std::thread> threads;
        threads.reserve(block);
        for (unsigned t = 0; t < block; ++t) {
            threads.emplace_back([=] {
                blockIdx.x = b;
                threadIdx.x = t;
                k(P(args)...);
            });
        }
        for (auto& th : threads) th.join();
    }
}
}  // namespace emu
