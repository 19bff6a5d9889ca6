// Image decoding and MNIST preprocessing: decode_grey_image(bytes) (PNG, JPEG, BMP, GIF
// through stb_image; PGM/PPM through nanomlp's reader) then preprocess_mnist, as
// `nanomlp predict` and POST /api/predict do.
#include <cstdlib>
#include <span>

#include "fuzz_util.hpp"
#include "nanomlp/io/image.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  nanomlp_fuzz::expect_typed_errors([&] {
    const nanomlp::GreyImage img = nanomlp::decode_grey_image({data, size}, "fuzz-image");
    if (img.pixels.size() != img.width * img.height) std::abort();
    (void)nanomlp::preprocess_mnist(img);
  });
  return 0;
}
