// classify MODEL IMAGE...: the most probable class of each image and its probability, as
// `nanomlp predict` prints them. Links nanomlp::nanomlp (model files and image decoding).
#include <cstdio>
#include <exception>

#include "nanomlp/core/version.hpp"
#include "nanomlp/io/image.hpp"
#include "nanomlp/io/model_io.hpp"

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: classify MODEL IMAGE...\n");
    return 2;
  }
  try {
    // The network is rebuilt from the file alone; its input normalisation travels with it.
    nanomlp::Network<float> net = nanomlp::load_model(argv[1]);
    for (int i = 2; i < argc; ++i) {
      // Any photo or drawing: decoded to grey, then MNIST's own preprocessing (crop, 20x20,
      // centre of mass at the centre of 28x28).
      const nanomlp::MnistImage image =
          nanomlp::preprocess_mnist(nanomlp::load_grey_image(argv[i]));
      const nanomlp::Prediction p = nanomlp::predict(net, {image}).front();
      std::printf("nanomlp %s: %s: class %d p=%.4f\n", nanomlp::kVersion, argv[i], p.cls,
                  static_cast<double>(p.probabilities[static_cast<std::size_t>(p.cls)]));
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "classify: %s\n", e.what());
    return 1;
  }
  return 0;
}
