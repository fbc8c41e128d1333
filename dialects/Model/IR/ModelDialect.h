//===- ModelDialect.h - The model dialect -----------------------*- C++ -*-===//
#ifndef CROSSPOOL_DIALECTS_MODEL_IR_MODELDIALECT_H
#define CROSSPOOL_DIALECTS_MODEL_IR_MODELDIALECT_H

#include "mlir/IR/Dialect.h"

#include "dialects/Model/IR/ModelDialect.h.inc"

#endif // CROSSPOOL_DIALECTS_MODEL_IR_MODELDIALECT_H
