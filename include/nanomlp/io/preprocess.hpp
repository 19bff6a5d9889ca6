// MNIST's preprocessing and batched prediction: what turns a grey-scale picture of a digit into
// the 784 pixels the network was trained on, and those into class probabilities. Pure
// computation (no image decoding, no files), so that it is part of nanomlp::inference, the
// target a program links to run a model with BLAS alone; nanomlp/io/image.hpp decodes files
// into a GreyImage.
//
// No global state: the functions are pure and may run on several threads at once; predict uses
// the network's own buffers (one network per thread).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "nanomlp/core/dataset.hpp"
#include "nanomlp/nn/network.hpp"

namespace nanomlp {

// One 28x28 MNIST-format image: row-major, 0 = background (black), 255 = ink (white).
using MnistImage = std::array<std::uint8_t, kImagePixels>;

// An 8-bit grey-scale image in the usual photographic sense: 0 = black, 255 = white.
struct GreyImage {
  std::size_t width = 0;
  std::size_t height = 0;
  std::vector<std::uint8_t> pixels;  // (height, width) row-major

  std::uint8_t at(std::size_t x, std::size_t y) const { return pixels[y * width + x]; }
};

// The least difference, in grey levels of 255, between the background and the strongest ink
// that preprocess_mnist accepts as a digit (less: a blank page, perhaps with some noise).
inline constexpr int kMinInkContrast = 32;

// MNIST's preprocessing (LeCun, Cortes & Burges, "The MNIST database"): the digit is
// size-normalised into a 20x20 box keeping its aspect ratio, anti-aliased, then "centered in a
// 28x28 image by computing the center of mass of the pixels, and translating the image so as
// to position this point at the center". Step by step:
//  1. Polarity: MNIST digits are white on black. The background is the median of the outer ring
//     of pixels; the ink is on whichever side of it the image reaches further. Dark ink on a
//     light border (a photo or scan of paper) is inverted; white on black is kept.
//  2. Contrast: the background level is subtracted and the ink divided by the strongest ink
//     (the darkest pixel on paper), giving ink strengths in [0, 1]; strengths under 0.2 are
//     paper texture, shading or JPEG noise and fade to 0 (a soft threshold, (s - 0.2) / 0.8,
//     so stroke edges stay anti-aliased).
//  3. Crop to the bounding box of the ink: the pixels with a non-zero strength that have at
//     least one such 8-neighbour (a lone speck of dust does not stretch the box).
//  4. Scale the longer side to 20 pixels, keeping the aspect ratio: area averaging (box
//     filter) when shrinking, bilinear interpolation when enlarging. The result is rescaled so
//     that its brightest pixel is 255, as in MNIST.
//  5. Translate by whole pixels so that the intensity-weighted centroid, in row/column index
//     coordinates, is within half a pixel of (14, 14), as in MNIST itself: every centroid of
//     the MNIST test set is within half a pixel of (14.0, 14.0) in these coordinates. Whole-
//     pixel shifts keep strokes sharp. Only a digit whose mass sits so far from the middle of
//     its box that ink would leave the field is shifted less, so that no ink is lost.
// Returns 784 pixels, white digit on black, ready for the model's own normalisation
// (Architecture::input_scale() and input_shift()). Throws DataError "no ink found: ..." if the
// image is (almost) a single shade: a contrast under kMinInkContrast between the background and
// the strongest ink, or an empty image.
MnistImage preprocess_mnist(const GreyImage& image);

struct Prediction {
  int cls = 0;                       // the most probable class (first one on a tie)
  std::vector<float> probabilities;  // softmax of the logits, one per class (num_classes)
};

// Classifies preprocessed images with the model's own input normalisation, in batches, in
// evaluation mode (dropout off, batch norm on its running statistics). Throws UsageError if the
// model does not take 784 inputs. An empty list gives an empty result.
std::vector<Prediction> predict(Network<float>& net, const std::vector<MnistImage>& images);

// Indices of the k most probable classes, most probable first (ties: lower index first);
// fewer when the model has fewer classes.
std::vector<int> top_classes(const Prediction& prediction, std::size_t k);

// The 28x28 image as a GreyImage (for write_pgm).
GreyImage to_grey_image(const MnistImage& image);

}  // namespace nanomlp
