// nanomlp_maxrss OUT_FILE COMMAND [ARGS...]: runs COMMAND, waits for it, writes its peak
// resident set size in KiB (getrusage(RUSAGE_CHILDREN).ru_maxrss) to OUT_FILE and exits with
// the command's exit status. bench/run.sh uses it instead of GNU time, which may be missing.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUT_FILE COMMAND [ARGS...]\n", argv[0]);
    return 2;
  }
  const pid_t pid = fork();
  if (pid < 0) {
    std::fprintf(stderr, "nanomlp_maxrss: fork failed: %s\n", std::strerror(errno));
    return 1;
  }
  if (pid == 0) {
    execvp(argv[2], argv + 2);
    std::fprintf(stderr, "nanomlp_maxrss: cannot run %s: %s\n", argv[2], std::strerror(errno));
    _exit(127);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      std::fprintf(stderr, "nanomlp_maxrss: waitpid failed: %s\n", std::strerror(errno));
      return 1;
    }
  }
  rusage usage{};
  getrusage(RUSAGE_CHILDREN, &usage);
  std::FILE* out = std::fopen(argv[1], "w");
  if (out == nullptr) {
    std::fprintf(stderr, "nanomlp_maxrss: cannot write %s: %s\n", argv[1], std::strerror(errno));
    return 1;
  }
  std::fprintf(out, "%ld\n", usage.ru_maxrss);  // KiB on Linux
  std::fclose(out);
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  return 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
