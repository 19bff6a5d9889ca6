// Faults while training, against the real binary: SIGKILL at random moments (some during the
// writes of checkpoints and of the model) then --resume to the end, a full disk and read-only
// folders for every output. The disk and read-only cases mount a tmpfs in a private mount
// namespace (unshare), and are skipped, saying why, where that is not allowed.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/inotify.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "nanomlp/core/dataset.hpp"
#include "test_util.hpp"

extern char** environ;

namespace nanomlp {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using testing::append_be32;
using testing::blob_digits;
using testing::CommandResult;
using ::testing::HasSubstr;
using testing::read_bytes;
using testing::run_command;
using ::testing::StartsWith;
using testing::TempDir;
using testing::write_bytes;

constexpr std::size_t kEpochs = 12;

// ROOT/mnist in IDX format: 1000 training and 100 test images of blob_digits, so that a run of
// kEpochs takes about a tenth of a second and a kill can land anywhere in it.
void write_tiny_mnist(const std::string& root) {
  const std::string dir = root + "/mnist";
  fs::create_directories(dir);
  const auto write_split = [&](const std::string& prefix, std::size_t count, std::uint64_t seed) {
    const Dataset d = blob_digits(count, seed, /*noisy_background=*/false);
    std::vector<unsigned char> images, labels;
    for (std::uint32_t v : {0x803u, static_cast<std::uint32_t>(count), 28u, 28u}) {
      append_be32(images, v);
    }
    images.insert(images.end(), d.images.begin(), d.images.end());
    append_be32(labels, 0x801u);
    append_be32(labels, static_cast<std::uint32_t>(count));
    labels.insert(labels.end(), d.labels.begin(), d.labels.end());
    write_bytes(dir + "/" + prefix + "-images-idx3-ubyte", images);
    write_bytes(dir + "/" + prefix + "-labels-idx1-ubyte", labels);
  };
  write_split("train", 1000, 1);
  write_split("t10k", 100, 2);
}

// The training settings of every run here: the default preset's Nesterov momentum and cosine
// schedule, dropout (its generator is in the checkpoints), two threads; the ink-sparse images
// and one hidden layer put it on the split step.
std::vector<std::string> train_args(const std::string& data_root) {
  std::vector<std::string> args = {"train", "--data", data_root, "--epochs",
                                   std::to_string(kEpochs)};
  for (const char* a : {"--hidden", "16", "--batch-size", "50", "--dropout", "0.1", "--seed", "3",
                        "--threads", "2"}) {
    args.emplace_back(a);
  }
  return args;
}

// Starts the binary with args, its stdout and stderr into log.
pid_t spawn_nanomlp(std::vector<std::string> args, const std::string& log) {
  args.insert(args.begin(), NANOMLP_BINARY);
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, NANOMLP_BINARY, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  EXPECT_EQ(rc, 0) << "posix_spawn " << NANOMLP_BINARY;
  return rc == 0 ? pid : -1;
}

// Runs the binary to its end; returns its exit code (-1 when a signal ended it).
int run_to_end(const std::vector<std::string>& args, const std::string& log) {
  const pid_t pid = spawn_nanomlp(args, log);
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Counts the temporary files ("NAME.tmp.PID", see write_bytes_atomic) created in the watched
// folders, as they are created: the moment to kill a writer in the middle of its write.
class TemporaryWatch {
 public:
  explicit TemporaryWatch(const std::vector<std::string>& dirs)
      : fd_(inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) {
    EXPECT_GE(fd_, 0) << "inotify_init1";
    for (const std::string& d : dirs) EXPECT_GE(inotify_add_watch(fd_, d.c_str(), IN_CREATE), 0);
  }
  ~TemporaryWatch() { ::close(fd_); }
  TemporaryWatch(const TemporaryWatch&) = delete;
  TemporaryWatch& operator=(const TemporaryWatch&) = delete;
  int fd() const { return fd_; }

  // Reads the pending events; returns the temporaries created since the last reset.
  int created() {
    alignas(inotify_event) char buf[8192];
    for (;;) {
      const ssize_t n = ::read(fd_, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t at = 0; at < n;) {
        const auto* e = reinterpret_cast<const inotify_event*>(buf + at);
        if (e->len > 0 && std::string(e->name).find(".tmp.") != std::string::npos) ++created_;
        at += static_cast<ssize_t>(sizeof(inotify_event) + e->len);
      }
    }
    return created_;
  }
  void reset() {
    created();
    created_ = 0;
  }

 private:
  int fd_;
  int created_ = 0;
};

// When to kill a run: at a time after its start, or as it creates its nth temporary file.
struct KillPlan {
  std::optional<Clock::duration> after;
  int nth_temporary = 0;
};

struct Outcome {
  bool killed = false;  // SIGKILL ended it; else it exited first, with exit_code
  int exit_code = -1;
  pid_t pid = -1;
};

// Runs the command to its end or until the plan kills it with SIGKILL.
Outcome run_until_killed(const std::vector<std::string>& args, const std::string& log,
                         TemporaryWatch& watch, const KillPlan& plan) {
  watch.reset();
  Outcome o;
  const auto start = Clock::now();
  o.pid = spawn_nanomlp(args, log);
  if (o.pid < 0) return o;
  int status = 0;
  for (;;) {
    if (plan.nth_temporary > 0 && watch.created() >= plan.nth_temporary) break;
    auto wait = std::chrono::microseconds(200);
    if (plan.after) {
      const auto remaining = start + *plan.after - Clock::now();
      if (remaining <= Clock::duration::zero()) break;
      wait = std::min(wait, std::chrono::duration_cast<std::chrono::microseconds>(remaining));
    }
    if (::waitpid(o.pid, &status, WNOHANG) == o.pid) {
      o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      return o;
    }
    pollfd p{watch.fd(), POLLIN, 0};
    const timespec ts{0, static_cast<long>(wait.count()) * 1000};
    ::ppoll(&p, 1, &ts, nullptr);
  }
  ::kill(o.pid, SIGKILL);
  ::waitpid(o.pid, &status, 0);  // a process that exited just before the signal is not killed
  o.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
  o.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

std::vector<std::string> names_in(const fs::path& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) names.push_back(e.path().filename());
  std::sort(names.begin(), names.end());
  return names;
}

// The files an interrupted write leaves in dir ("X.tmp.PID", "X.probe.PID"), with their folder.
std::vector<std::string> leftovers_in(const fs::path& dir, const std::string& kind = "tmp|probe") {
  const std::regex pattern(".*\\.(" + kind + ")\\.\\d+");
  std::vector<std::string> out;
  for (const std::string& n : names_in(dir)) {
    if (std::regex_match(n, pattern)) out.push_back((dir / n).string());
  }
  return out;
}

bool holds_a_checkpoint(const fs::path& dir) {
  static const std::regex pattern(R"(checkpoint-epoch-\d{4}\.safetensors)");
  for (const std::string& n : names_in(dir)) {
    if (std::regex_match(n, pattern)) return true;
  }
  return false;
}

std::string checkpoint_name(std::size_t epoch) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "checkpoint-epoch-%04zu.safetensors", epoch);
  return buf;
}

std::string read_text(const std::string& path) {
  const std::vector<unsigned char> b = read_bytes(path);
  return {b.begin(), b.end()};
}

// The data and the uninterrupted run that every test compares with, made once.
class Faults : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir;
    data_root_ = dir_->file("data");
    write_tiny_mnist(data_root_);
    std::vector<std::string> args = train_args(data_root_);
    args.insert(args.end(),
                {"--checkpoint-dir", dir_->file("ref-ck"), "--out", dir_->file("ref.safetensors")});
    const auto t0 = Clock::now();
    ref_exit_code_ = run_to_end(args, dir_->file("ref.log"));
    run_time_ = Clock::now() - t0;
    ref_model_ = read_bytes(dir_->file("ref.safetensors"));
    checkpoint_bytes_ = fs::file_size(dir_->path() / "ref-ck" / checkpoint_name(1));
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override {
    ASSERT_EQ(ref_exit_code_, 0) << read_text(dir_->file("ref.log"));
    ASSERT_FALSE(ref_model_.empty());
  }

  static TempDir* dir_;
  static std::string data_root_;
  static int ref_exit_code_;
  static Clock::duration run_time_;
  static std::vector<unsigned char> ref_model_;
  static std::uintmax_t checkpoint_bytes_;
};

TempDir* Faults::dir_ = nullptr;
std::string Faults::data_root_;
int Faults::ref_exit_code_ = -1;
Clock::duration Faults::run_time_{};
std::vector<unsigned char> Faults::ref_model_;
std::uintmax_t Faults::checkpoint_bytes_ = 0;

struct KillTally {
  int kills = 0;
  int during_checkpoint_write = 0;
  int during_model_write = 0;
  int runs = 0;
};

// Kills one run as the plan says and counts where the kill landed: in the middle of a write
// when the killed process's temporary file is still there.
void kill_once(const std::vector<std::string>& args, const std::string& log, const fs::path& ck,
               const fs::path& out_dir, TemporaryWatch& watch, const KillPlan& plan,
               KillTally& tally) {
  ++tally.runs;
  const Outcome o = run_until_killed(args, log, watch, plan);
  if (!o.killed) {
    ASSERT_EQ(o.exit_code, 0) << read_text(log);
    return;  // it ended before the kill: nothing to count
  }
  ++tally.kills;
  const std::string suffix = ".tmp." + std::to_string(o.pid);
  const auto mine = [&](const std::string& p) { return p.ends_with(suffix); };
  const std::vector<std::string> in_ck = leftovers_in(ck, "tmp"), in_out = leftovers_in(out_dir);
  tally.during_checkpoint_write += std::count_if(in_ck.begin(), in_ck.end(), mine) > 0;
  tally.during_model_write += std::count_if(in_out.begin(), in_out.end(), mine) > 0;
}

// One trial: a fresh run killed `kills` times (each at a random moment of the run or as it
// starts a random one of its writes), each restart resuming from the newest checkpoint (or
// starting afresh when the kill came before the first), then a last run to the end. Its model
// must be the uninterrupted run's to the byte, every epoch's checkpoint must be there and no
// temporary left: each one an interrupted write left is removed, with a line naming it.
void kill_and_resume(const std::string& data_root, const fs::path& dir,
                     const std::vector<unsigned char>& expected_model, Clock::duration run_time,
                     int kills, std::mt19937& gen, KillTally& tally) {
  const fs::path ck = dir / "ck", out_dir = dir / "out";
  fs::create_directories(ck);
  fs::create_directories(out_dir);
  const std::string out = (out_dir / "model.safetensors").string();
  TemporaryWatch watch({ck.string(), out_dir.string()});
  const auto args_now = [&] {
    std::vector<std::string> a = train_args(data_root);
    a.insert(a.end(), {"--checkpoint-dir", ck.string(), "--out", out});
    if (holds_a_checkpoint(ck)) a.push_back("--resume");
    return a;
  };
  const std::string log = (dir / "log.txt").string();
  for (int k = 0; k < kills; ++k) {
    KillPlan plan;
    if (gen() % 5 < 2) {
      plan.nth_temporary = 1 + static_cast<int>(gen() % (kEpochs + 1));  // the last: the model
    } else {
      plan.after = run_time * static_cast<int>(gen() % 1100) / 1000;
    }
    kill_once(args_now(), log, ck, out_dir, watch, plan, tally);
    if (::testing::Test::HasFatalFailure()) return;
  }
  std::vector<std::string> left = leftovers_in(ck);
  for (const std::string& p : leftovers_in(out_dir)) left.push_back(p);
  ++tally.runs;
  const Outcome last = run_until_killed(args_now(), log, watch, KillPlan{});
  const std::string output = read_text(log);
  ASSERT_EQ(last.exit_code, 0) << output;
  EXPECT_TRUE(testing::same_model_file(read_bytes(out), expected_model))
      << "the resumed model differs from the uninterrupted run's; last output:\n"
      << output;
  for (const std::string& p : left) EXPECT_THAT(output, HasSubstr("removed " + p + ", left by"));
  std::vector<std::string> expected_names;
  for (std::size_t e = 1; e <= kEpochs; ++e) expected_names.push_back(checkpoint_name(e));
  EXPECT_EQ(names_in(ck), expected_names);
  EXPECT_EQ(names_in(out_dir), std::vector<std::string>{"model.safetensors"});
}

TEST_F(Faults, KilledAtRandomMomentsAndResumedTheModelIsTheUninterruptedRunsToTheByte) {
  TempDir dir;
  std::mt19937 gen(20240611);  // fixed: the same kill plan on every run of the test
  KillTally tally;
  const auto start = Clock::now();
  for (int trial = 0; tally.kills < 24 && trial < 60; ++trial) {
    const int kills = 1 + static_cast<int>(gen() % 2);
    kill_and_resume(data_root_, dir.path() / ("trial-" + std::to_string(trial)), ref_model_,
                    run_time_, kills, gen, tally);
    if (HasFatalFailure()) return;
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  std::cout << "[ faults   ] " << tally.kills << " kills (" << tally.during_checkpoint_write
            << " during a checkpoint write, " << tally.during_model_write
            << " during the model write) in " << tally.runs << " runs, " << seconds
            << " s; an uninterrupted run takes " << std::chrono::duration<double>(run_time_).count()
            << " s" << std::endl;
  RecordProperty("kills", tally.kills);
  RecordProperty("during_checkpoint_write", tally.during_checkpoint_write);
  EXPECT_GE(tally.kills, 20);
  // A kill as a checkpoint's temporary appears lands before its rename unless the write and
  // fsync beat the signal: of the ten or so such kills, some must have landed mid-write.
  EXPECT_GE(tally.during_checkpoint_write, 1);
}

// The temporaries of a killed run's writes, whose process is gone, are removed when the next
// run starts, one line each; a live process's temporary is left alone.
TEST_F(Faults, TemporariesOfAKilledRunAreRemovedWhenTheNextStarts) {
  TempDir dir;
  const pid_t gone = ::fork();
  if (gone == 0) ::_exit(0);
  ASSERT_GT(gone, 0);
  ASSERT_EQ(::waitpid(gone, nullptr, 0), gone);
  const std::string dead = std::to_string(gone), live = std::to_string(::getpid());
  fs::create_directories(dir.path() / "ck");
  const std::vector<std::string> stale = {
      dir.file("model.safetensors.tmp." + dead),
      dir.file("model.safetensors.probe." + dead),
      dir.file("metrics.json.tmp." + dead),
      dir.file("report.html.tmp." + dead),
      dir.file("ck/checkpoint-epoch-0002.safetensors.tmp." + dead),
      dir.file("ck/checkpoint-epoch-0000.safetensors.probe." + dead)};
  for (const std::string& p : stale) write_bytes(p, {1, 2, 3});
  write_bytes(dir.file("model.safetensors.tmp." + live), {1, 2, 3});

  std::vector<std::string> args = train_args(data_root_);
  args.insert(args.end(),
              {"--out", dir.file("model.safetensors"), "--metrics-json", dir.file("metrics.json"),
               "--report", dir.file("report.html"), "--checkpoint-dir", dir.file("ck")});
  ASSERT_EQ(run_to_end(args, dir.file("log.txt")), 0) << read_text(dir.file("log.txt"));
  const std::string output = read_text(dir.file("log.txt"));
  for (const std::string& p : stale) {
    EXPECT_THAT(output, HasSubstr("removed " + p + ", left by an interrupted ")) << output;
    EXPECT_FALSE(fs::exists(p)) << p;
  }
  EXPECT_TRUE(fs::exists(dir.file("model.safetensors.tmp." + live)));
  EXPECT_TRUE(testing::same_model_file(read_bytes(dir.file("model.safetensors")), ref_model_));
}

// --- A full disk and read-only folders, on a tmpfs of a private mount namespace ---------------

std::string first_line(const std::string& text) {
  return text.substr(0, text.find('\n'));
}

// The command that runs a shell script where it may mount a tmpfs: a private mount namespace,
// entered through an unprivileged user namespace (unshare -rm) or, for root, directly
// (unshare -m). Empty, with the reasons in *why_not, where neither can mount.
std::string mount_namespace(std::string* why_not) {
  TempDir probe;
  const std::string mount_it =
      " sh -c 'mount -t tmpfs -o size=64k tmpfs \"" + probe.path().string() + "\"'";
  for (const std::string prefix : {"unshare -rm", "unshare -m"}) {
    if (prefix == "unshare -m" && ::geteuid() != 0) continue;
    const CommandResult r = run_command(prefix + mount_it);
    if (r.exit_code == 0) return prefix;
    *why_not += (why_not->empty() ? "" : "; ") + prefix + ": " + first_line(r.output);
  }
  return {};
}

// A shell script for the namespace. run NAME DIR ARGS... runs nanomlp with ARGS and keeps, in
// the test's folder, NAME.log (its output), NAME.rc (its exit code) and NAME.ls (what DIR
// holds afterwards), since the mounts vanish with the namespace.
class NamespaceScript {
 public:
  explicit NamespaceScript(const TempDir& dir) : dir_(dir) {
    text_ = "set -u\nW='" + dir.path().string() + "'\n" +
            "run() { name=$1; dir=$2; shift 2\n"
            "  '" NANOMLP_BINARY
            "' \"$@\" > \"$W/$name.log\" 2>&1; echo $? > \"$W/$name.rc\"\n"
            "  (cd \"$dir\" && find . -mindepth 1 | sort) > \"$W/$name.ls\"; }\n";
  }
  void line(const std::string& l) { text_ += l + "\n"; }
  void run(const std::string& name, const std::string& listed, std::vector<std::string> args) {
    std::string l = "run " + name + " '" + listed + "'";
    for (const std::string& a : args) l += " '" + a + "'";
    line(l);
  }
  CommandResult execute(const std::string& prefix) const {
    write_bytes(dir_.file("script.sh"), {text_.begin(), text_.end()});
    return run_command(prefix + " sh '" + dir_.file("script.sh") + "'");
  }

 private:
  const TempDir& dir_;
  std::string text_;
};

struct CaseResult {
  int exit_code = -1;
  std::string output;
  std::vector<std::string> listing;  // the folder's entries afterwards, as "./name"
};

CaseResult case_result(const TempDir& dir, const std::string& name) {
  CaseResult r;
  const std::string rc = read_text(dir.file(name + ".rc"));
  r.exit_code = rc.empty() ? -1 : std::stoi(rc);
  r.output = read_text(dir.file(name + ".log"));
  std::istringstream ls(read_text(dir.file(name + ".ls")));
  for (std::string l; std::getline(ls, l);) r.listing.push_back(l);
  return r;
}

// Why a test that needs a tmpfs is skipped.
std::string no_namespace(const std::string& why_not) {
  return "cannot mount a tmpfs in a private mount namespace (" + why_not +
         "): without unprivileged user namespaces only root can, so this case does not run";
}

std::string disk_full_line(const std::string& path) {
  return "nanomlp: error: cannot write " + path + ": the disk is full (No space left on device)\n";
}

// Every output on one small disk: the checkpoint that does not fit stops the run, its exit code
// 1 and its one line naming that file; the disk keeps the complete checkpoints before it and
// nothing else (no model, metrics or report, no temporary). With space again, --resume ends
// the run with the uninterrupted run's model.
TEST_F(Faults, AFullDiskStopsTheRunWithOneLineAndNoPartialFileAndTheRunResumesOnceThereIsRoom) {
  std::string why_not;
  const std::string ns = mount_namespace(&why_not);
  if (ns.empty()) GTEST_SKIP() << no_namespace(why_not);
  TempDir dir;
  const std::string disk = dir.file("disk");
  fs::create_directories(disk);
  // 8 MiB taken by a file, and room for one checkpoint and a half: the second one fails. Then
  // the file goes, as a user would free space (remounting larger is refused in an unprivileged
  // user namespace).
  const std::uintmax_t kib = 8192 + (checkpoint_bytes_ * 3 / 2 + 1023) / 1024;
  std::vector<std::string> args = train_args(data_root_);
  args.insert(args.end(),
              {"--quiet", "--out", disk + "/model.safetensors", "--checkpoint-dir", disk + "/ck",
               "--metrics-json", disk + "/metrics.json", "--report", disk + "/report.html"});
  NamespaceScript script(dir);
  script.line("mount -t tmpfs -o size=" + std::to_string(kib) + "k tmpfs '" + disk + "' || exit 9");
  script.line("head -c 8388608 /dev/zero > '" + disk + "/fill' || exit 9");
  script.run("full", disk, args);
  script.line("rm '" + disk + "/fill'");
  args.erase(std::find(args.begin(), args.end(), "--quiet"));  // for the line saying where from
  args.push_back("--resume");
  script.run("resumed", disk, args);
  script.line("cp '" + disk + "/model.safetensors' '" + dir.file("resumed.safetensors") + "'");
  const CommandResult r = script.execute(ns);
  ASSERT_EQ(r.exit_code, 0) << r.output;

  const CaseResult full = case_result(dir, "full");
  EXPECT_EQ(full.exit_code, 1) << full.output;
  EXPECT_EQ(full.output, disk_full_line(disk + "/ck/" + checkpoint_name(2)));
  std::cout << "[ faults   ] disk full: " << full.output;
  EXPECT_EQ(full.listing,
            (std::vector<std::string>{"./ck", "./ck/" + checkpoint_name(1), "./fill"}));

  const CaseResult resumed = case_result(dir, "resumed");
  EXPECT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_THAT(resumed.output,
              HasSubstr("resuming from " + disk + "/ck/" + checkpoint_name(1) + " (epoch 1"));
  EXPECT_TRUE(testing::same_model_file(read_bytes(dir.file("resumed.safetensors")), ref_model_));
  std::vector<std::string> expected = {"./ck"};
  for (std::size_t e = 1; e <= kEpochs; ++e) expected.push_back("./ck/" + checkpoint_name(e));
  for (const char* f : {"./metrics.json", "./model.safetensors", "./report.html"}) {
    expected.push_back(f);
  }
  EXPECT_EQ(resumed.listing, expected);
}

// Each output alone on a full disk (a tmpfs filled up): exit code 1, one line naming the file
// and saying the disk is full, and the disk holds nothing new.
TEST_F(Faults, EachOutputOnAFullDiskFailsWithOneLineNamingItAndLeavesNothing) {
  std::string why_not;
  const std::string ns = mount_namespace(&why_not);
  if (ns.empty()) GTEST_SKIP() << no_namespace(why_not);
  TempDir dir;
  const std::string disk = dir.file("disk");
  fs::create_directories(disk);
  struct Case {
    std::string name, flag, path, failing;
  };
  const std::vector<Case> cases = {
      {"out", "--out", disk + "/model.safetensors", disk + "/model.safetensors"},
      {"metrics", "--metrics-json", disk + "/metrics.json", disk + "/metrics.json"},
      {"report", "--report", disk + "/report.html", disk + "/report.html"},
      {"ck", "--checkpoint-dir", disk + "/ck", disk + "/ck/" + checkpoint_name(1)}};
  NamespaceScript script(dir);
  script.line("mount -t tmpfs -o size=64k tmpfs '" + disk + "' || exit 9");
  script.line("head -c 1048576 /dev/zero > '" + disk + "/fill' 2> /dev/null");
  for (const Case& c : cases) {
    std::vector<std::string> args = train_args(data_root_);
    args.insert(args.end(), {"--quiet", c.flag, c.path});
    if (c.flag != "--out") args.insert(args.end(), {"--out", dir.file(c.name + ".safetensors")});
    script.run(c.name, disk, args);
    if (c.flag == "--checkpoint-dir") script.line("rmdir '" + c.path + "'");
  }
  const CommandResult r = script.execute(ns);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const Case& c : cases) {
    const CaseResult result = case_result(dir, c.name);
    EXPECT_EQ(result.exit_code, 1) << c.flag << ": " << result.output;
    EXPECT_EQ(result.output, disk_full_line(c.failing)) << c.flag;
    const std::vector<std::string> expected = c.flag == "--checkpoint-dir"
                                                  ? std::vector<std::string>{"./ck", "./fill"}
                                                  : std::vector<std::string>{"./fill"};
    EXPECT_EQ(result.listing, expected) << c.flag;
  }
}

// An output that a folder refuses, and the line that says so.
struct RefusedCase {
  std::string name;
  std::vector<std::string> flags;
  std::string expected;
};

std::vector<RefusedCase> read_only_cases(const std::string& ro, const std::string& reason) {
  const auto file = [&](const char* flag, const std::string& name) {
    return "nanomlp: error: " + std::string(flag) + ": cannot write " + ro + "/" + name +
           " (folder " + ro + "): " + reason + "\n";
  };
  return {
      {"ro-out", {"--out", ro + "/model.safetensors"}, file("--out", "model.safetensors")},
      {"ro-metrics", {"--metrics-json", ro + "/m.json"}, file("--metrics-json", "m.json")},
      {"ro-report", {"--report", ro + "/r.html"}, file("--report", "r.html")},
      {"ro-ck",
       {"--checkpoint-dir", ro},
       "nanomlp: error: --checkpoint-dir: cannot write checkpoints in folder " + ro + ": " +
           reason + "\n"},
  };
}

std::vector<std::string> refused_args(const std::string& data_root, const TempDir& dir,
                                      const RefusedCase& c) {
  std::vector<std::string> args = train_args(data_root);
  if (c.flags.front() != "--out") args.insert(args.end(), {"--out", dir.file(c.name + ".st")});
  args.insert(args.end(), c.flags.begin(), c.flags.end());
  return args;
}

// Exit code 1, the one line naming the flag, the path and the reason (so the run stopped
// before it printed anything else), nothing written.
void expect_refused(const TempDir& dir, const RefusedCase& c, const CaseResult& r) {
  EXPECT_EQ(r.exit_code, 1) << c.name << ": " << r.output;
  EXPECT_EQ(r.output, c.expected) << c.name;
  EXPECT_EQ(r.listing, std::vector<std::string>{}) << c.name << " wrote in the folder";
  EXPECT_FALSE(fs::exists(dir.file(c.name + ".st"))) << c.name << ": the run trained";
  std::cout << "[ faults   ] " << c.name << ": " << r.output;
}

// A read-only folder (a read-only tmpfs) for each output stops the run before training.
TEST_F(Faults, AReadOnlyFolderForEachOutputFailsWithOneLineBeforeTraining) {
  std::string why_not;
  const std::string ns = mount_namespace(&why_not);
  if (ns.empty()) GTEST_SKIP() << no_namespace(why_not);
  TempDir dir;
  const std::string ro = dir.file("ro");
  fs::create_directories(ro);
  NamespaceScript script(dir);
  script.line("mount -t tmpfs -o ro tmpfs '" + ro + "' || exit 9");
  const std::vector<RefusedCase> cases = read_only_cases(ro, "Read-only file system");
  for (const RefusedCase& c : cases) script.run(c.name, ro, refused_args(data_root_, dir, c));
  // A checkpoint folder to create in it is refused when it is created, after the data is read.
  RefusedCase create{"ro-ck-new",
                     {"--checkpoint-dir", ro + "/ck", "--quiet"},
                     "nanomlp: error: --checkpoint-dir: cannot create folder " + ro +
                         "/ck: Read-only file system\n"};
  script.run(create.name, ro, refused_args(data_root_, dir, create));
  const CommandResult r = script.execute(ns);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const RefusedCase& c : cases) expect_refused(dir, c, case_result(dir, c.name));
  expect_refused(dir, create, case_result(dir, create.name));
}

// Without a namespace: /sys refuses new files even to root, so a checkpoint folder there stops
// the run before it reads the data (there is none to read).
TEST_F(Faults, ACheckpointFolderThatRefusesNewFilesFailsBeforeTheDataIsRead) {
  if (!fs::is_directory("/sys")) GTEST_SKIP() << "no /sys here";
  TempDir dir;
  std::vector<std::string> args = train_args(dir.file("no-such-data"));
  args.insert(args.end(), {"--checkpoint-dir", "/sys", "--out", dir.file("model.safetensors")});
  const int exit_code = run_to_end(args, dir.file("log.txt"));
  const std::string output = read_text(dir.file("log.txt"));
  EXPECT_EQ(exit_code, 1) << output;
  EXPECT_THAT(
      output,
      StartsWith("nanomlp: error: --checkpoint-dir: cannot write checkpoints in folder /sys: "));
  EXPECT_EQ(std::count(output.begin(), output.end(), '\n'), 1) << output;
  EXPECT_EQ(names_in(dir.path()), std::vector<std::string>{"log.txt"});
}

// The same with folders that deny writing (chmod 0555), which root is not denied.
TEST_F(Faults, AFolderWithoutWritePermissionForEachOutputFailsWithOneLineBeforeTraining) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "running as root, which permission bits do not stop (the read-only tmpfs "
                    "case covers read-only folders)";
  }
  TempDir dir;
  const std::string ro = dir.file("ro");
  fs::create_directories(ro);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec | fs::perms::group_read |
                          fs::perms::group_exec | fs::perms::others_read | fs::perms::others_exec);
  for (const RefusedCase& c : read_only_cases(ro, "Permission denied")) {
    CaseResult r;
    r.exit_code = run_to_end(refused_args(data_root_, dir, c), dir.file(c.name + ".log"));
    r.output = read_text(dir.file(c.name + ".log"));
    for (const std::string& n : names_in(ro)) r.listing.push_back("./" + n);
    expect_refused(dir, c, r);
  }
  fs::permissions(ro, fs::perms::owner_all);  // for TempDir to remove it
}

}  // namespace
}  // namespace nanomlp
