// Run-time version queries (see include/tacit/core/version.hpp).

#include <tacit/core/version.hpp>

namespace tacit::inline v1 {

const char *runtime_version() noexcept {
  return TACIT_VERSION_STRING;
}

const char *runtime_components() noexcept {
  return "core"
#if TACIT_HAVE_ONNX
         " onnx"
#endif
#if TACIT_HAVE_LP
         " lp"
#endif
#if TACIT_HAVE_IMAGE
         " image"
#endif
#if TACIT_HAVE_IDX
         " idx"
#endif
      ;
}

} // namespace tacit::inline v1
