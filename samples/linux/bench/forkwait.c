// The forkwait microbenchmark of Adams and Agesen (ASPLOS 2006): fork a
// child that exits at once, wait for it, 40,000 times. Prints the total
// time and the time per fork/wait pair.
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char** argv) {
  int n = argc > 1 ? atoi(argv[1]) : 40000;
  double start = now();
  for (int i = 0; i < n; ++i) {
    pid_t pid = fork();
    if (pid == 0) _exit(0);
    if (pid < 0) {
      perror("fork");
      return 1;
    }
    waitpid(pid, NULL, 0);
  }
  double secs = now() - start;
  printf("forkwait: %d forks, %.3f s, %.1f us per fork\n", n, secs, secs * 1e6 / n);
  return 0;
}
