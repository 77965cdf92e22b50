#pragma once
/// \file tacit.hpp
/// Umbrella header: everything in the public API.
#include <tacit/analysis/attack.hpp>
#include <tacit/analysis/bounds.hpp>
#include <tacit/analysis/sensitivity.hpp>
#include <tacit/analysis/wellposed.hpp>
#include <tacit/core/activation.hpp>
#include <tacit/core/block_structure.hpp>
#include <tacit/core/capabilities.hpp>
#include <tacit/core/csr.hpp>
#include <tacit/core/dense.hpp>
#include <tacit/core/error.hpp>
#include <tacit/core/isa.hpp>
#include <tacit/core/model.hpp>
#include <tacit/core/operator.hpp>
#include <tacit/core/operator_base.hpp>
#include <tacit/core/structure.hpp>
#include <tacit/core/version.hpp>
#include <tacit/io/idx.hpp>
#include <tacit/io/image.hpp>
#include <tacit/io/io.hpp>
#include <tacit/io/native_codec.hpp>
#include <tacit/nn/generate.hpp>
#include <tacit/nn/network.hpp>
#include <tacit/nn/onnx.hpp>
#include <tacit/operators/structured.hpp>
#include <tacit/solve/solve.hpp>
