#pragma once
/// \file tacit.hpp
/// Umbrella header: everything in the public API.
#include <tacit/attack.hpp>
#include <tacit/bounds.hpp>
#include <tacit/csr.hpp>
#include <tacit/dense.hpp>
#include <tacit/error.hpp>
#include <tacit/generate.hpp>
#include <tacit/idx.hpp>
#include <tacit/io.hpp>
#include <tacit/image.hpp>
#include <tacit/model.hpp>
#include <tacit/network.hpp>
#include <tacit/onnx.hpp>
#include <tacit/operator.hpp>
#include <tacit/sensitivity.hpp>
#include <tacit/solve.hpp>
#include <tacit/structure.hpp>
#include <tacit/structured.hpp>
#include <tacit/version.hpp>
#include <tacit/wellposed.hpp>
