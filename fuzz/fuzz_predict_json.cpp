// The JSON body of POST /api/predict: pixels_from_json (HttpError, a nanomlp::Error, for a
// bad body); the pixels of an accepted body are classified by a small fixed network, as the
// server does. (How the server reads the Content-Type header is private to src/app/server.cpp.)
#include <memory>
#include <string_view>
#include <vector>

#include "fuzz_util.hpp"
#include "nanomlp/app/server.hpp"
#include "nanomlp/core/rng.hpp"
#include "nanomlp/io/image.hpp"
#include "nanomlp/nn/network.hpp"

namespace {
nanomlp::Network<float>& network() {
  static const std::unique_ptr<nanomlp::Network<float>> net = [] {
    nanomlp::Architecture arch;
    arch.hidden = {8};
    auto n = std::make_unique<nanomlp::Network<float>>(arch);
    nanomlp::Rng rng(1);
    n->init(rng);
    return n;
  }();
  return *net;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  nanomlp_fuzz::expect_typed_errors([&] {
    const nanomlp::MnistImage image = nanomlp::pixels_from_json(body);
    const auto p = nanomlp::predict(network(), {image});
    if (p.size() != 1 || p[0].cls < 0 || p[0].cls >= 10) std::abort();
  });
  return 0;
}
