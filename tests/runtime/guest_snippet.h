// 32-bit guest code for tests, written inline with the GNU assembler's
// .code32 so each test shows the exact instructions it runs. A snippet is
// copied to a fixed guest address, so it must be position independent.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#define BT86_STR2(x) #x
#define BT86_STR(x) BT86_STR2(x)

// Defines extern "C" symbols snippet_<name>_begin/_end around 32-bit code.
#define GUEST_SNIPPET(name, code)                                        \
  extern "C" const uint8_t snippet_##name##_begin[], snippet_##name##_end[]; \
  asm(".pushsection .rodata\n"                                           \
      ".globl snippet_" #name "_begin\n"                                 \
      ".globl snippet_" #name "_end\n"                                   \
      "snippet_" #name "_begin:\n"                                       \
      ".code32\n" code "\n.code64\n"                                     \
      "snippet_" #name "_end:\n"                                         \
      ".popsection\n");                                                  \
  static std::span<const uint8_t> snippet_##name() {                     \
    return {snippet_##name##_begin, size_t(snippet_##name##_end - snippet_##name##_begin)}; \
  }

// The same in Intel syntax (the assembler is switched back to AT&T after it).
#define INTEL(name, code) GUEST_SNIPPET(name, ".intel_syntax noprefix\n" code "\n.att_syntax prefix\n")
