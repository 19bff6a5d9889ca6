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

// A checkpoint (io/checkpoint.hpp) is a model file too: its __metadata__ has "format"
// kCheckpointFormat, the model's format_version and architecture, and its model's tensors are
// named kCheckpointModelPrefix + the model file's name ("model.0.weight"), beside the
// optimizer's state.
inline constexpr const char* kCheckpointFormat = "nanomlp-checkpoint";
inline constexpr const char* kCheckpointModelPrefix = "model.";
bool is_checkpoint(const SafeTensors& st);

// Rebuilds the network described by the metadata and loads its tensors, checking that every
// tensor the architecture needs is present with dtype F32 (I64 for counters) and the exact
// shape, and that there are no others (in a checkpoint: no other "model." tensors). Throws
// ModelFormatError naming `source`. Takes a model file or a checkpoint, of every format version.
Network<float> model_from_safetensors(const SafeTensors& st, const std::string& source);

// Atomic write (temp file + rename); IoError for an unwritable path.
void save_model(const std::string& path, Network<float>& net,
                const std::map<std::string, std::string>& extra_metadata = {});

// The network of a model file or a checkpoint; IoError for a missing file, ModelFormatError for
// a bad one.
Network<float> load_model(const std::string& path);

}  // namespace nanomlp
