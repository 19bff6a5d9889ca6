// classify_pixels MODEL WIDTH HEIGHT < PIXELS: the class of a grey-scale picture that a program
// already holds in memory (a canvas, a camera frame): WIDTH x HEIGHT bytes, row-major,
// 0 = black, 255 = white, read here from standard input. Links nanomlp::inference alone, which
// needs BLAS and nothing else: no image codecs, no zlib.
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/preprocess.hpp"

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: classify_pixels MODEL WIDTH HEIGHT < PIXELS\n");
    return 2;
  }
  try {
    nanomlp::GreyImage picture;
    picture.width = std::strtoul(argv[2], nullptr, 10);
    picture.height = std::strtoul(argv[3], nullptr, 10);
    picture.pixels.resize(picture.width * picture.height);
    if (std::fread(picture.pixels.data(), 1, picture.pixels.size(), stdin) !=
        picture.pixels.size()) {
      std::fprintf(stderr, "classify_pixels: expected %zu bytes on standard input\n",
                   picture.pixels.size());
      return 1;
    }
    nanomlp::Network<float> net = nanomlp::load_model(argv[1]);
    const nanomlp::Prediction p =
        nanomlp::predict(net, {nanomlp::preprocess_mnist(picture)}).front();
    std::printf("class %d p=%.4f\n", p.cls,
                static_cast<double>(p.probabilities[static_cast<std::size_t>(p.cls)]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify_pixels: %s\n", e.what());
    return 1;
  }
  return 0;
}
