//===- ExecDialect.h - The execution dialect --------------------*- C++ -*-===//
#ifndef CROSSPOOL_DIALECTS_EXEC_IR_EXECDIALECT_H
#define CROSSPOOL_DIALECTS_EXEC_IR_EXECDIALECT_H

#include "dialects/Model/IR/ModelDialect.h"
#include "mlir/IR/Dialect.h"

#include "dialects/Exec/IR/ExecDialect.h.inc"

#endif // CROSSPOOL_DIALECTS_EXEC_IR_EXECDIALECT_H
