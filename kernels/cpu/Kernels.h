//===- Kernels.h - All CPU fp32 reference kernels ---------------*- C++ -*-===//
//
// Umbrella header for the executor: namespace crosspool::kernels::cpu.
// Kernels take raw pointers and small POD parameter structs; decoding plan
// instructions into these calls is the executor's job.
//
//===----------------------------------------------------------------------===//
#ifndef CROSSPOOL_KERNELS_CPU_KERNELS_H
#define CROSSPOOL_KERNELS_CPU_KERNELS_H

#include "kernels/cpu/Attention.h"
#include "kernels/cpu/Elementwise.h"
#include "kernels/cpu/Linear.h"
#include "kernels/cpu/Moe.h"

#endif // CROSSPOOL_KERNELS_CPU_KERNELS_H
