// Guest code that both the translator tests and bench/translator_bench.cpp
// run, kept once so that what the bench measures is what the tests check.
// Each is Intel-syntax text for INTEL() (guest_snippet.h), to be preceded by
// the caller's own set-up.
#pragma once

// Recursive fib(EAX) -> EAX, then int3: every call and ret is a control
// transfer the translator chains or resolves through its in-TC lookup.
// ECX is scratch; the stack must hold about 12 bytes per level.
#define GUEST_FIB_OF_EAX \
  "call 2f\n"            \
  "int3\n"               \
  "2: cmp eax, 2\n"      \
  "jb 3f\n"              \
  "push eax\n"           \
  "dec eax\n"            \
  "call 2b\n"            \
  "mov ecx, eax\n"       \
  "pop eax\n"            \
  "push ecx\n"           \
  "sub eax, 2\n"         \
  "call 2b\n"            \
  "pop ecx\n"            \
  "add eax, ecx\n"       \
  "3: ret\n"
