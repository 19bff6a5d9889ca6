// classify MODEL IMAGE: prints the most probable class of the image and its probability, as
// `nanomlp predict` does. Uses only nanomlp::io (model files, images) and what it brings.
#include <cstdio>
#include <exception>

#include "nanomlp/core/version.hpp"
#include "nanomlp/io/image.hpp"
#include "nanomlp/io/model_io.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: classify MODEL IMAGE\n");
    return 2;
  }
  try {
    nanomlp::Network<float> net = nanomlp::load_model(argv[1]);
    const auto image = nanomlp::preprocess_mnist(nanomlp::load_grey_image(argv[2]));
    const auto prediction = nanomlp::predict(net, {image}).front();
    std::printf("nanomlp %s: class %d p=%.4f\n", nanomlp::kVersion, prediction.cls,
                static_cast<double>(prediction.probabilities[prediction.cls]));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: %s\n", e.what());
    return 1;
  }
  return 0;
}
