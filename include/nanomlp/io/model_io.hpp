// Model files: a Network in the safetensors format with the tensor names and layouts of a
// PyTorch nn.Sequential state dict ("0.weight" [out, in], "0.bias" [out], ...), so that
// `model.load_state_dict(safetensors.torch.load_file(path))` works unchanged. __metadata__
// records the format version and the Architecture, so a file rebuilds its network alone.
#pragma once

#include <map>
#include <string>

#include "nanomlp/io/safetensors.hpp"
#include "nanomlp/nn/network.hpp"

namespace nanomlp {

// 2: a batch-norm weight is [H], as in PyTorch (version 1 wrote it [1, H]; still read).
inline constexpr int kModelFormatVersion = 2;

SafeTensors model_to_safetensors(Network<float>& net,
                                 const std::map<std::string, std::string>& extra_metadata = {});

// Rebuilds the network described by the metadata and loads its tensors, checking that every
// tensor the architecture needs is present with dtype F32 (I64 for counters) and the exact
// shape, and that there are no others. Throws ModelFormatError naming `source`.
Network<float> model_from_safetensors(const SafeTensors& st, const std::string& source);

// Atomic write (temp file + rename); IoError for an unwritable path.
void save_model(const std::string& path, Network<float>& net,
                const std::map<std::string, std::string>& extra_metadata = {});

// IoError for a missing file, ModelFormatError for a bad one.
Network<float> load_model(const std::string& path);

}  // namespace nanomlp
