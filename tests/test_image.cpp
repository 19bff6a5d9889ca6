// Image decoding (PNG, JPEG, PGM), MNIST preprocessing, prediction and `nanomlp predict`.
//
// Test images are generated here: PNG and JPEG with stb_image_write (Debian's libstb, the
// library nanomlp decodes with), PGM by hand. The real-data tests render MNIST test digits the
// way a user would photograph or draw them (dark ink on light paper, large, off-centre) and
// check that preprocessing gives MNIST back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stb/stb_image_write.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <nlohmann/json.hpp>
#include <numeric>
#include <stdexcept>
#include <string>
#include <vector>

#include "nanomlp/core/errors.hpp"
#include "nanomlp/core/rng.hpp"
#include "nanomlp/io/data.hpp"
#include "nanomlp/io/image.hpp"
#include "nanomlp/io/model_io.hpp"
#include "nanomlp/nn/network.hpp"
#include "test_util.hpp"

namespace nanomlp {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using testing::message_of;
using testing::real_data_root;
using testing::run_nanomlp;
using testing::TempDir;
using testing::write_bytes;
using Bytes = std::vector<unsigned char>;
using Json = nlohmann::json;

// ---- helpers ------------------------------------------------------------------------------

// A w x h canvas of one colour.
GreyImage canvas(std::size_t w, std::size_t h, std::uint8_t colour) {
  return GreyImage{w, h, std::vector<std::uint8_t>(w * h, colour)};
}

void fill_rect(GreyImage& img, std::size_t x0, std::size_t y0, std::size_t w, std::size_t h,
               std::uint8_t colour) {
  for (std::size_t y = y0; y < y0 + h; ++y) {
    for (std::size_t x = x0; x < x0 + w; ++x) img.pixels[y * img.width + x] = colour;
  }
}

// Pixels (x, y) with inside(x - cx, y - cy) set to colour.
void paint(GreyImage& img, double cx, double cy, std::uint8_t colour,
           const std::function<bool(double, double)>& inside) {
  for (std::size_t y = 0; y < img.height; ++y) {
    for (std::size_t x = 0; x < img.width; ++x) {
      if (inside(static_cast<double>(x) - cx, static_cast<double>(y) - cy)) {
        img.pixels[y * img.width + x] = colour;
      }
    }
  }
}

// A digit-like figure, roughly a "6": a thick ring with a stroke rising from its left side,
// scaled by s. Lopsided, so its centroid is far from the centre of its bounding box.
bool six(double dx, double dy, double s) {
  const double r = std::hypot(dx, dy) / s;
  const bool ring = r >= 10 && r <= 17;
  const bool stem = dx / s >= -17 && dx / s <= -10 && dy / s >= -45 && dy / s <= 0;
  return ring || stem;
}

bool write_png(const std::string& path, std::size_t w, std::size_t h, int channels,
               const std::vector<std::uint8_t>& samples) {
  return stbi_write_png(path.c_str(), static_cast<int>(w), static_cast<int>(h), channels,
                        samples.data(), static_cast<int>(w) * channels) != 0;
}

bool write_png(const std::string& path, const GreyImage& img) {
  return write_png(path, img.width, img.height, 1, img.pixels);
}

bool write_jpg(const std::string& path, const GreyImage& img, int quality) {
  return stbi_write_jpg(path.c_str(), static_cast<int>(img.width), static_cast<int>(img.height), 1,
                        img.pixels.data(), quality) != 0;
}

Bytes bytes_of(const std::string& s) {
  return Bytes(s.begin(), s.end());
}

// Index-coordinate centroid (x, y) of a 28x28 image.
std::array<double, 2> centroid(const MnistImage& img) {
  double m = 0, mx = 0, my = 0;
  for (std::size_t y = 0; y < 28; ++y) {
    for (std::size_t x = 0; x < 28; ++x) {
      const double v = img[y * 28 + x];
      m += v;
      mx += v * static_cast<double>(x);
      my += v * static_cast<double>(y);
    }
  }
  return {mx / m, my / m};
}

struct Box {
  std::size_t x0 = 28, y0 = 28, x1 = 0, y1 = 0;
  std::size_t width() const { return x1 - x0 + 1; }
  std::size_t height() const { return y1 - y0 + 1; }
};

// Bounding box of the non-zero pixels.
Box ink_box(const MnistImage& img) {
  Box b;
  for (std::size_t y = 0; y < 28; ++y) {
    for (std::size_t x = 0; x < 28; ++x) {
      if (img[y * 28 + x] == 0) continue;
      b.x0 = std::min(b.x0, x);
      b.x1 = std::max(b.x1, x);
      b.y0 = std::min(b.y0, y);
      b.y1 = std::max(b.y1, y);
    }
  }
  return b;
}

double correlation(const std::uint8_t* a, const std::uint8_t* b, std::size_t n) {
  double ma = 0, mb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    ma += a[i];
    mb += b[i];
  }
  ma /= static_cast<double>(n);
  mb /= static_cast<double>(n);
  double sab = 0, saa = 0, sbb = 0;
  for (std::size_t i = 0; i < n; ++i) {
    sab += (a[i] - ma) * (b[i] - mb);
    saa += (a[i] - ma) * (a[i] - ma);
    sbb += (b[i] - mb) * (b[i] - mb);
  }
  return sab / std::sqrt(saa * sbb);
}

// The best correlation of a 28x28 image with `original` shifted by at most one pixel.
double correlation_up_to_one_pixel(const MnistImage& img, const std::uint8_t* original) {
  double best = -1.0;
  for (int dy = -1; dy <= 1; ++dy) {
    for (int dx = -1; dx <= 1; ++dx) {
      MnistImage shifted{};
      for (int y = 0; y < 28; ++y) {
        for (int x = 0; x < 28; ++x) {
          const int sx = x - dx;
          const int sy = y - dy;
          if (sx >= 0 && sx < 28 && sy >= 0 && sy < 28)
            shifted[y * 28 + x] = original[sy * 28 + sx];
        }
      }
      best = std::max(best, correlation(img.data(), shifted.data(), 28 * 28));
    }
  }
  return best;
}

// An MNIST digit as a user might supply it: upscaled `scale` times (nearest neighbour), dark
// ink (`ink`) on light paper (`paper`), placed at (left, top) on a larger sheet.
GreyImage render_on_paper(const std::uint8_t* digit, std::size_t scale, std::size_t left,
                          std::size_t top, std::size_t sheet_w, std::size_t sheet_h,
                          std::uint8_t paper, std::uint8_t ink) {
  if (left + 28 * scale > sheet_w || top + 28 * scale > sheet_h) {
    throw std::logic_error("render_on_paper: the digit does not fit on the sheet");
  }
  GreyImage img = canvas(sheet_w, sheet_h, paper);
  for (std::size_t y = 0; y < 28 * scale; ++y) {
    for (std::size_t x = 0; x < 28 * scale; ++x) {
      const double v = digit[(y / scale) * 28 + x / scale] / 255.0;  // 1 = ink
      img.pixels[(top + y) * sheet_w + left + x] =
          static_cast<std::uint8_t>(std::lround(paper + v * (ink - paper)));
    }
  }
  return img;
}

// ---- decoding -----------------------------------------------------------------------------

TEST(Image, DecodesRgbAndTransparentPng) {
  TempDir dir;
  // 4x2 RGBA: red, green, blue, white; then black half-transparent, black fully transparent,
  // grey opaque, black opaque.
  const std::vector<std::uint8_t> rgba = {255, 0,   0,   255, 0,   255, 0, 255, 0,   0,  255,
                                          255, 255, 255, 255, 255, 0,   0, 0,   128, 0,  0,
                                          0,   0,   100, 100, 100, 255, 0, 0,   0,   255};
  const std::string path = dir.file("rgba.png");
  ASSERT_TRUE(write_png(path, 4, 2, 4, rgba));
  const GreyImage g = load_grey_image(path);
  ASSERT_EQ(g.width, 4u);
  ASSERT_EQ(g.height, 2u);
  // Luminance 0.299 R + 0.587 G + 0.114 B; alpha composited onto white.
  const std::vector<std::uint8_t> expected = {76, 150, 29, 255, 127, 255, 100, 0};
  for (std::size_t i = 0; i < expected.size(); ++i) {
    EXPECT_NEAR(g.pixels[i], expected[i], 1) << "pixel " << i;
  }

  // Grey + alpha.
  const std::string ga = dir.file("ga.png");
  ASSERT_TRUE(write_png(ga, 2, 1, 2, {50, 255, 50, 0}));
  const GreyImage g2 = load_grey_image(ga);
  EXPECT_EQ(g2.pixels, (std::vector<std::uint8_t>{50, 255}));
}

TEST(Image, DecodesGreyPngExactly) {
  TempDir dir;
  GreyImage img = canvas(37, 23, 0);
  for (std::size_t i = 0; i < img.pixels.size(); ++i) {
    img.pixels[i] = static_cast<std::uint8_t>(i * 7);
  }
  ASSERT_TRUE(write_png(dir.file("g.png"), img));
  const GreyImage g = load_grey_image(dir.file("g.png"));
  EXPECT_EQ(g.width, 37u);
  EXPECT_EQ(g.height, 23u);
  EXPECT_EQ(g.pixels, img.pixels);
}

TEST(Image, DecodesJpeg) {
  TempDir dir;
  // A smooth gradient survives JPEG almost unchanged.
  GreyImage img = canvas(64, 48, 0);
  for (std::size_t y = 0; y < 48; ++y) {
    for (std::size_t x = 0; x < 64; ++x)
      img.pixels[y * 64 + x] = static_cast<std::uint8_t>(x * 3 + y);
  }
  const std::string path = dir.file("g.jpg");
  ASSERT_TRUE(write_jpg(path, img, 95));
  const GreyImage g = load_grey_image(path);
  ASSERT_EQ(g.width, 64u);
  ASSERT_EQ(g.height, 48u);
  double err = 0;
  for (std::size_t i = 0; i < g.pixels.size(); ++i) {
    err += std::abs(static_cast<int>(g.pixels[i]) - static_cast<int>(img.pixels[i]));
  }
  EXPECT_LT(err / static_cast<double>(g.pixels.size()), 2.0);
}

TEST(Image, DecodesBinaryAndAsciiPgm) {
  TempDir dir;
  // P5 with a comment, maxval 255.
  std::string p5 = "P5\n# made by hand\n3 2\n255\n";
  p5 += std::string{'\x00', '\x40', '\x80', '\xc0', '\xff', '\x10'};
  write_bytes(dir.file("a.pgm"), bytes_of(p5));
  GreyImage g = load_grey_image(dir.file("a.pgm"));
  EXPECT_EQ(g.width, 3u);
  EXPECT_EQ(g.height, 2u);
  EXPECT_EQ(g.pixels, (std::vector<std::uint8_t>{0, 0x40, 0x80, 0xc0, 0xff, 0x10}));

  // P2 (ASCII) with comments and maxval 15: values are rescaled to 0..255.
  write_bytes(dir.file("b.pgm"), bytes_of("P2 # ascii\n2 2 # size\n15\n0 15\n# row two\n5\n10\n"));
  g = load_grey_image(dir.file("b.pgm"));
  EXPECT_EQ(g.width, 2u);
  EXPECT_EQ(g.height, 2u);
  EXPECT_EQ(g.pixels, (std::vector<std::uint8_t>{0, 255, 85, 170}));

  // P5 with 16-bit samples (big-endian), maxval 1000.
  std::string p16 = "P5 2 1 1000\n";
  p16 += std::string{'\x00', '\x00', '\x03', '\xe8'};  // 0, 1000
  write_bytes(dir.file("c.pgm"), bytes_of(p16));
  g = load_grey_image(dir.file("c.pgm"));
  EXPECT_EQ(g.pixels, (std::vector<std::uint8_t>{0, 255}));

  // Truncated rasters and bad samples name the file.
  write_bytes(dir.file("short.pgm"), bytes_of("P5\n4 4\n255\nabc"));
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(dir.file("short.pgm")); }),
              AllOf(HasSubstr(dir.file("short.pgm")), HasSubstr("truncated")));
  write_bytes(dir.file("short2.pgm"), bytes_of("P2\n2 2\n255\n1 2 3"));
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(dir.file("short2.pgm")); }),
              AllOf(HasSubstr(dir.file("short2.pgm")), HasSubstr("truncated")));
  write_bytes(dir.file("big.pgm"), bytes_of("P2\n1 1\n15\n16\n"));
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(dir.file("big.pgm")); }),
              AllOf(HasSubstr(dir.file("big.pgm")), HasSubstr("exceeds maxval")));
  write_bytes(dir.file("zero.pgm"), bytes_of("P5\n0 7\n255\n"));
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(dir.file("zero.pgm")); }),
              AllOf(HasSubstr(dir.file("zero.pgm")), HasSubstr("zero size")));
}

TEST(Image, UnreadableFilesNameTheFile) {
  TempDir dir;
  const std::string missing = dir.file("missing.png");
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(missing); }),
              AllOf(HasSubstr(missing), HasSubstr("No such file")));

  const std::string text = dir.file("notes.png");
  write_bytes(text, bytes_of("this is not an image, just text\n"));
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(text); }),
              AllOf(HasSubstr(text), HasSubstr("not an image")));

  const std::string empty = dir.file("empty.png");
  write_bytes(empty, {});
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(empty); }),
              AllOf(HasSubstr(empty), HasSubstr("empty")));

  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(dir.path().string()); }),
              AllOf(HasSubstr(dir.path().string()), HasSubstr("folder")));
  // A device is refused before anything is read from it (it used to read 512 MiB of zeros).
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image("/dev/zero"); }),
              HasSubstr("/dev/zero: is a device, not an image file"));
  // A sparse file over the limit is refused from its size, without reading it.
  const std::string huge = dir.file("huge.png");
  write_bytes(huge, bytes_of("\x89PNG"));
  std::filesystem::resize_file(huge, std::uintmax_t{600} << 20);
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(huge); }),
              AllOf(HasSubstr(huge), HasSubstr("file too large (600 MiB, at most 512 MiB)")));

  // A PNG cut in half.
  GreyImage img = canvas(64, 64, 0);
  for (std::size_t i = 0; i < img.pixels.size(); ++i) {
    img.pixels[i] = static_cast<std::uint8_t>((i * 2654435761u) >> 24);  // incompressible
  }
  const std::string whole = dir.file("whole.png");
  ASSERT_TRUE(write_png(whole, img));
  Bytes bytes = testing::read_bytes(whole);
  ASSERT_GT(bytes.size(), 1000u);
  bytes.resize(bytes.size() / 2);
  const std::string cut = dir.file("cut.png");
  write_bytes(cut, bytes);
  EXPECT_THAT(message_of<DataError>([&] { load_grey_image(cut); }),
              AllOf(HasSubstr(cut), HasSubstr("truncated or corrupt")));
}

// Inputs found by fuzzing and by hand (the hardening issue). Debian's stb_image read out of
// bounds on the first JPEG and decoded the second from uninitialised memory; PNG and JPEG now
// go to libpng and libjpeg-turbo, and every format checks its declared size before decoding.
Bytes hex_bytes(const std::string& hex) {
  Bytes out;
  for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
    out.push_back(static_cast<std::uint8_t>(std::stoi(hex.substr(i, 2), nullptr, 16)));
  }
  return out;
}

TEST(HostileImages, BrokenJpegsAreErrorsNotPictures) {
  for (const std::string hex : {"ffd8ffc4b50000b6b6", "ffd8ffc0000b08001c001c01011100ffd9"}) {
    const Bytes b = hex_bytes(hex);
    EXPECT_THAT(message_of<DataError>([&] { decode_grey_image(b, "x.jpg"); }),
                HasSubstr("x.jpg: cannot decode JPEG, truncated or corrupt"))
        << hex;
  }
  // A real JPEG cut short: libjpeg's "premature end of data" warning is an error here.
  TempDir dir;
  GreyImage img = canvas(64, 64, 0);
  for (std::size_t i = 0; i < img.pixels.size(); ++i) {
    img.pixels[i] = static_cast<std::uint8_t>((i * 2654435761u) >> 24);
  }
  ASSERT_TRUE(write_jpg(dir.file("n.jpg"), img, 95));
  Bytes bytes = testing::read_bytes(dir.file("n.jpg"));
  bytes.resize(bytes.size() * 2 / 3);
  EXPECT_THAT(message_of<DataError>([&] { decode_grey_image(bytes, "cut.jpg"); }),
              HasSubstr("cut.jpg: cannot decode JPEG"));
}

TEST(HostileImages, DeclaredSizesAreCheckedBeforeDecoding) {
  // 19 bytes of ASCII PNM declaring 8192x8192: refused at once, whatever the cap.
  const Bytes p3 = bytes_of("P3 8192 8192 255\n1 ");
  EXPECT_THAT(message_of<DataError>([&] { decode_grey_image(p3, "big.ppm"); }),
              HasSubstr("big.ppm: truncated PNM"));
  EXPECT_THAT(message_of<ImageTooLargeError>(
                  [&] { decode_grey_image(p3, "big.ppm", std::size_t{1} << 24); }),
              HasSubstr("big.ppm: image too large (8192x8192, at most 16777216 pixels)"));
  // A BMP header of 8000x8000 pixels, 24 bits, uncompressed, in 284 bytes.
  Bytes bmp(284, 0);
  const auto put32 = [&](std::size_t at, std::uint32_t v) {
    for (int k = 0; k < 4; ++k) bmp[at + k] = static_cast<std::uint8_t>(v >> (8 * k));
  };
  bmp[0] = 'B';
  bmp[1] = 'M';
  put32(2, 284);
  put32(10, 54);
  put32(14, 40);
  put32(18, 8000);
  put32(22, 8000);
  bmp[26] = 1;
  bmp[28] = 24;
  EXPECT_THAT(message_of<DataError>([&] { decode_grey_image(bmp, "t.bmp"); }),
              HasSubstr("t.bmp: truncated BMP: its header declares 8000x8000 pixels"));
  // Found by the fuzz campaign: the same with a compression code stb_image does not know
  // (0xfffe0000), which it reads as uncompressed: a blank 8000x8000 image, slow, not an error.
  put32(30, 0xfffe0000u);
  EXPECT_THAT(message_of<DataError>([&] { decode_grey_image(bmp, "t.bmp"); }),
              HasSubstr("t.bmp: truncated BMP"));
  // A PNG that is nothing but a header claiming 20000x20000 pixels.
  Bytes png = hex_bytes("89504e470d0a1a0a0000000d49484452");
  for (int k = 0; k < 2; ++k) {
    for (const std::uint8_t c : {0x00, 0x00, 0x4e, 0x20}) png.push_back(c);  // 20000
  }
  EXPECT_THAT(message_of<ImageTooLargeError>([&] { decode_grey_image(png, "h.png", 1u << 24); }),
              HasSubstr("h.png: image too large (20000x20000"));
}

// ---- preprocessing ------------------------------------------------------------------------

TEST(Preprocess, DarkOnLightAndLightOnDarkGiveTheSameDigit) {
  // The same figure as dark pencil on off-white paper, and as white on black.
  GreyImage paper = canvas(160, 120, 235);
  paint(paper, 70, 72, 30, [](double dx, double dy) { return six(dx, dy, 1.0); });
  GreyImage screen = canvas(160, 120, 0);
  paint(screen, 70, 72, 255, [](double dx, double dy) { return six(dx, dy, 1.0); });
  const MnistImage a = preprocess_mnist(paper);
  const MnistImage b = preprocess_mnist(screen);
  int max_diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) max_diff = std::max(max_diff, std::abs(a[i] - b[i]));
  EXPECT_LE(max_diff, 2);
  // White on black, as MNIST: black border, full-strength ink.
  EXPECT_EQ(a[0], 0);
  EXPECT_EQ(a[27 * 28 + 27], 0);
  EXPECT_EQ(*std::max_element(a.begin(), a.end()), 255);
  EXPECT_GT(correlation(a.data(), b.data(), a.size()), 0.999);
}

TEST(Preprocess, CropsAndScalesTheLongerSideToTwentyPixels) {
  // A 200x100 bright rectangle off-centre on a black 320x240 image: 20 wide, 10 high.
  GreyImage img = canvas(320, 240, 0);
  fill_rect(img, 13, 121, 200, 100, 255);
  MnistImage out = preprocess_mnist(img);
  Box b = ink_box(out);
  EXPECT_EQ(b.width(), 20u);
  EXPECT_EQ(b.height(), 10u);
  for (std::size_t y = b.y0; y <= b.y1; ++y) {
    for (std::size_t x = b.x0; x <= b.x1; ++x) EXPECT_EQ(out[y * 28 + x], 255);
  }

  // Tall and small: a 6x12 dark bar on white is enlarged to 10x20 (bilinear).
  img = canvas(40, 40, 255);
  fill_rect(img, 30, 3, 6, 12, 0);
  out = preprocess_mnist(img);
  b = ink_box(out);
  EXPECT_EQ(b.width(), 10u);
  EXPECT_EQ(b.height(), 20u);
  EXPECT_EQ(out[(b.y0 + 10) * 28 + b.x0 + 5], 255);  // solid inside
}

TEST(Preprocess, CentreOfMassLandsAtTheCentre) {
  // Lopsided figures far from the centre of large images, some tiny and some huge.
  struct Case {
    std::size_t w, h;
    double cx, cy, scale;
  };
  for (const Case& c : {Case{300, 200, 60, 140, 1.0}, Case{90, 400, 60, 300, 0.9},
                        Case{40, 40, 10, 28, 0.25}, Case{1200, 900, 900, 300, 6.0}}) {
    GreyImage img = canvas(c.w, c.h, 0);
    paint(img, c.cx, c.cy, 200, [&](double dx, double dy) { return six(dx, dy, c.scale); });
    const MnistImage out = preprocess_mnist(img);
    const auto [x, y] = centroid(out);
    EXPECT_NEAR(x, 14.0, 0.5) << c.w << "x" << c.h;
    EXPECT_NEAR(y, 14.0, 0.5) << c.w << "x" << c.h;
    const Box b = ink_box(out);
    EXPECT_EQ(std::max(b.width(), b.height()), 20u) << c.w << "x" << c.h;
  }
  // A round blob off-centre.
  GreyImage img = canvas(100, 100, 0);
  paint(img, 20, 75, 255, [](double dx, double dy) { return dx * dx + 2 * dy * dy < 150; });
  const auto [x, y] = centroid(preprocess_mnist(img));
  EXPECT_NEAR(x, 14.0, 0.5);
  EXPECT_NEAR(y, 14.0, 0.5);
}

TEST(Preprocess, IgnoresFaintNoiseAndSpecks) {
  // Black-on-white with JPEG-like noise of a few grey levels and a lone speck far away: the
  // same result as the clean image.
  GreyImage clean = canvas(200, 150, 240);
  paint(clean, 80, 90, 20, [](double dx, double dy) { return six(dx, dy, 1.2); });
  GreyImage noisy = clean;
  Rng rng(5);
  for (auto& p : noisy.pixels) {
    p = static_cast<std::uint8_t>(std::clamp<long>(p + std::lround(rng.normal() * 4), 0, 255));
  }
  noisy.pixels[5 * 200 + 190] = 0;  // a speck of dust in the corner
  const MnistImage a = preprocess_mnist(clean);
  const MnistImage b = preprocess_mnist(noisy);
  EXPECT_EQ(ink_box(a).x0, ink_box(b).x0);
  EXPECT_EQ(ink_box(a).y0, ink_box(b).y0);
  EXPECT_GT(correlation(a.data(), b.data(), a.size()), 0.98);
}

TEST(Preprocess, BlankImageHasNoInk) {
  for (std::uint8_t colour : {0, 128, 255}) {
    EXPECT_THAT(message_of<DataError>([&] { preprocess_mnist(canvas(50, 40, colour)); }),
                HasSubstr("no ink found"));
  }
  // Faint noise on white paper is still blank.
  GreyImage noisy = canvas(64, 64, 250);
  Rng rng(2);
  for (auto& p : noisy.pixels) p = static_cast<std::uint8_t>(245 + rng.below(10));
  EXPECT_THAT(message_of<DataError>([&] { preprocess_mnist(noisy); }), HasSubstr("no ink found"));
  EXPECT_THAT(message_of<DataError>([&] { preprocess_mnist(GreyImage{}); }),
              HasSubstr("no ink found"));
  // A single pixel of ink is a (tiny) digit, not an error.
  GreyImage dot = canvas(9, 9, 255);
  dot.pixels[4 * 9 + 4] = 0;
  const auto [x, y] = centroid(preprocess_mnist(dot));
  EXPECT_NEAR(x, 14.0, 0.5);
  EXPECT_NEAR(y, 14.0, 0.5);
}

TEST(Preprocess, RealMnistDigitSurvivesARoundTripThroughPng) {
  const std::string root = real_data_root();
  if (root.empty()) GTEST_SKIP() << "no MNIST data (set NANOMLP_DATA)";
  const DataSplit data = load_dataset(root, "mnist");
  TempDir dir;
  // Image #0 upscaled 10x, inverted to black on white, saved as PNG and read back.
  const std::string path = dir.file("digit0.png");
  ASSERT_TRUE(write_png(path, render_on_paper(data.test.image(0), 10, 0, 0, 280, 280, 255, 0)));
  const MnistImage back = preprocess_mnist(load_grey_image(path));
  EXPECT_GT(correlation(back.data(), data.test.image(0), kImagePixels), 0.9);

  // The first 20 digits on grey paper, smaller, off-centre, through JPEG: still MNIST-like, up
  // to a shift of one pixel (MNIST rounds the centroid to a whole pixel too: when it lies near
  // half a pixel, JPEG noise can tip the rounding the other way).
  double worst = 1.0;
  for (std::size_t i = 0; i < 20; ++i) {
    const std::string jpg = dir.file("d" + std::to_string(i) + ".jpg");
    ASSERT_TRUE(
        write_jpg(jpg, render_on_paper(data.test.image(i), 7, 31, 12, 260, 230, 225, 40), 90));
    const MnistImage m = preprocess_mnist(load_grey_image(jpg));
    worst = std::min(worst, correlation_up_to_one_pixel(m, data.test.image(i)));
  }
  EXPECT_GT(worst, 0.9);
}

// ---- prediction ---------------------------------------------------------------------------

Network<float> tiny_network(const std::string& dataset = "mnist") {
  Architecture a;
  a.hidden = {16};
  a.dataset = dataset;
  a.norm_mean = 0.1307;
  a.norm_std = 0.3081;
  Network<float> net(a);
  Rng rng(7);
  net.init(rng);
  return net;
}

TEST(Predict, GivesProbabilitiesAndTheArgMax) {
  Network<float> net = tiny_network();
  std::vector<MnistImage> images(300);  // more than one batch
  Rng rng(3);
  for (auto& img : images) {
    for (auto& p : img) p = static_cast<std::uint8_t>(rng.below(256));
  }
  const std::vector<Prediction> preds = predict(net, images);
  ASSERT_EQ(preds.size(), images.size());
  for (const Prediction& p : preds) {
    ASSERT_EQ(p.probabilities.size(), 10u);
    EXPECT_NEAR(std::accumulate(p.probabilities.begin(), p.probabilities.end(), 0.0), 1.0, 1e-5);
    const auto best = std::max_element(p.probabilities.begin(), p.probabilities.end());
    EXPECT_EQ(p.cls, best - p.probabilities.begin());
    const std::vector<int> top = top_classes(p, 3);
    ASSERT_EQ(top.size(), 3u);
    EXPECT_EQ(top[0], p.cls);
    EXPECT_GE(p.probabilities[top[0]], p.probabilities[top[1]]);
    EXPECT_GE(p.probabilities[top[1]], p.probabilities[top[2]]);
  }
  // The same image alone gives the same answer as in a batch.
  const std::vector<Prediction> one = predict(net, {images[280]});
  EXPECT_EQ(one[0].probabilities, preds[280].probabilities);
  EXPECT_TRUE(predict(net, {}).empty());

  Architecture wrong;
  wrong.input_dim = 100;
  Network<float> small(wrong);
  EXPECT_THROW(predict(small, images), UsageError);
}

// ---- nanomlp predict ----------------------------------------------------------------------

std::string q(const std::string& s) {
  return "'" + s + "'";
}

TEST(PredictCli, JsonListWithOneObjectPerFileAndPerFileErrors) {
  TempDir dir;
  Network<float> net = tiny_network();
  const std::string model = dir.file("m.safetensors");
  save_model(model, net);
  GreyImage img = canvas(120, 100, 250);
  paint(img, 50, 60, 10, [](double dx, double dy) { return six(dx, dy, 1.0); });
  const std::string a = dir.file("a.png");
  ASSERT_TRUE(write_png(a, img));
  const std::string missing = dir.file("missing.png");

  const auto r = run_nanomlp("predict --model " + q(model) + " " + q(a) + " " + q(missing) +
                             " --json --threads 1");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  const Json j = Json::parse(r.output);
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 2u);
  EXPECT_EQ(j[0]["file"], a);
  const std::vector<MnistImage> pre = {preprocess_mnist(img)};
  EXPECT_EQ(j[0]["class"], predict(net, pre)[0].cls);
  ASSERT_EQ(j[0]["top"].size(), 3u);
  EXPECT_EQ(j[0]["top"][0]["class"], j[0]["class"]);
  double sum = 0, last = 1.0;
  for (const auto& t : j[0]["top"]) {
    const double p = t["probability"];
    EXPECT_LE(p, last);
    last = p;
    sum += p;
    EXPECT_EQ(t["label"], std::to_string(t["class"].get<int>()));
  }
  EXPECT_LE(sum, 1.0 + 1e-6);
  EXPECT_GT(sum, 0.0);
  EXPECT_EQ(j[1]["file"], missing);
  EXPECT_THAT(j[1]["error"].get<std::string>(), HasSubstr(missing));
  EXPECT_FALSE(j[1].contains("class"));
}

TEST(PredictCli, TextOutputLabelsAndSavedPreprocessedImages) {
  TempDir dir;
  Network<float> net = tiny_network("fashion-mnist");
  const std::string model = dir.file("m.safetensors");
  save_model(model, net);
  GreyImage img = canvas(90, 90, 0);
  fill_rect(img, 20, 10, 40, 70, 255);
  const std::string a = dir.file("coat.pgm");
  {
    std::string pgm = "P5\n90 90\n255\n";
    pgm.append(img.pixels.begin(), img.pixels.end());
    write_bytes(a, bytes_of(pgm));
  }
  const std::string blank = dir.file("blank.png");
  ASSERT_TRUE(write_png(blank, canvas(30, 30, 255)));
  const std::string out = dir.file("seen");

  auto r =
      run_nanomlp("predict --model " + q(model) + " " + q(a) + " --save-preprocessed " + q(out));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  const std::vector<Prediction> p = predict(net, {preprocess_mnist(img)});
  const std::string label = class_names("fashion-mnist")[static_cast<std::size_t>(p[0].cls)];
  EXPECT_THAT(r.output, HasSubstr(a + ": " + label + " ("));
  const GreyImage seen = load_grey_image(out + "/coat-28x28.pgm");
  ASSERT_EQ(seen.width, 28u);
  const MnistImage expected = preprocess_mnist(img);
  EXPECT_EQ(seen.pixels, std::vector<std::uint8_t>(expected.begin(), expected.end()));

  // A blank image: one error line naming the file; the good file is still classified.
  r = run_nanomlp("predict --model " + q(model) + " " + q(blank) + " " + q(a));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("nanomlp: error: " + blank + ": no ink found"));
  EXPECT_THAT(r.output, HasSubstr(a + ": " + label));

  // A bad model is one error, exit 1.
  r = run_nanomlp("predict --model " + q(dir.file("nope.safetensors")) + " " + q(a));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  // No image: usage error.
  r = run_nanomlp("predict --model " + q(model));
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

TEST(PredictCli, ClassifiesRenderedMnistDigitsWithATrainedModel) {
  const std::string root = real_data_root();
  if (root.empty()) GTEST_SKIP() << "no MNIST data (set NANOMLP_DATA)";
  TempDir dir;
  const std::string model = dir.file("m.safetensors");
  auto r =
      run_nanomlp("train --data " + q(root) + " --epochs 1 --threads 2 --quiet --out " + q(model));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const DataSplit data = load_dataset(root, "mnist");
  // Ten test digits as a user would give them: dark ink on light paper, large, off-centre,
  // alternately PNG and JPEG.
  std::string args;
  for (std::size_t i = 0; i < 10; ++i) {
    const std::size_t index = 100 + i * 37;
    const GreyImage img =
        render_on_paper(data.test.image(index), 6 + i % 4, 5 + 3 * i, 40 - 2 * i, 320, 300,
                        static_cast<std::uint8_t>(230 + i), static_cast<std::uint8_t>(20 + 3 * i));
    const std::string path = dir.file("digit" + std::to_string(i) + (i % 2 ? ".jpg" : ".png"));
    ASSERT_TRUE(i % 2 ? write_jpg(path, img, 90) : write_png(path, img));
    args += " " + q(path);
  }
  r = run_nanomlp("predict --json --threads 2 --model " + q(model) + args);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const Json j = Json::parse(r.output);
  ASSERT_EQ(j.size(), 10u);
  int correct = 0;
  for (std::size_t i = 0; i < 10; ++i) {
    correct += j[i]["class"].get<int>() == data.test.labels[100 + i * 37];
  }
  EXPECT_GE(correct, 8) << r.output;
}

}  // namespace
}  // namespace nanomlp
