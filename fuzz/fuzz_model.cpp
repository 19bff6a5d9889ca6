// Model files: parse_safetensors(bytes) then model_from_safetensors; when a model loads, one
// blank image goes through predict (a model without 784 inputs answers UsageError).
#include <vector>

#include "fuzz_util.hpp"
#include "nanomlp/io/image.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/io/safetensors.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::uint8_t> bytes(data, data + size);
  nanomlp_fuzz::expect_typed_errors([&] {
    const nanomlp::SafeTensors st = nanomlp::parse_safetensors(bytes, "fuzz.safetensors");
    nanomlp::Network<float> net = nanomlp::model_from_safetensors(st, "fuzz.safetensors");
    // What a model file rebuilds must be writable again (nanomlp keeps no other state).
    (void)nanomlp::serialize_safetensors(nanomlp::model_to_safetensors(net));
    const std::vector<nanomlp::MnistImage> images(1, nanomlp::MnistImage{});
    const std::vector<nanomlp::Prediction> p = nanomlp::predict(net, images);
    if (p.size() != 1 || p[0].probabilities.size() != net.architecture().num_classes) {
      std::abort();
    }
  });
  return 0;
}
