// Unit tests of kernel image classification and ELF validation.
#include "monitor/kernel_image.h"

#include <gtest/gtest.h>

#include "test_util.h"

namespace bt86::monitor {
namespace {

using test::build_elf;
using test::ElfSpec;

Result<KernelImage> classify(std::vector<uint8_t> bytes) { return KernelImage::parse("img", std::move(bytes)); }

void expect_refused(std::vector<uint8_t> bytes, const std::string& why) {
  auto img = classify(std::move(bytes));
  ASSERT_FALSE(img.ok()) << why;
  EXPECT_NE(img.error().message.find("img: "), std::string::npos) << img.error().message;
  EXPECT_NE(img.error().message.find(why), std::string::npos) << img.error().message;
}

TEST(KernelImage, RecognisesBzImage) {
  auto img = classify(test::fake_bzimage());
  ASSERT_TRUE(img.ok()) << img.error().message;
  EXPECT_EQ(img->kind(), ImageKind::LinuxBzImage);
  EXPECT_EQ(img->description(), "Linux bzImage (boot protocol 2.15)");
}

TEST(KernelImage, RecognisesMultibootElf) {
  ElfSpec spec;
  spec.extra = test::multiboot_header(0x3);
  auto img = classify(build_elf(spec));
  ASSERT_TRUE(img.ok()) << img.error().message;
  EXPECT_EQ(img->kind(), ImageKind::Multiboot);
}

TEST(KernelImage, MultibootNeedsValidChecksum) {
  ElfSpec spec;
  spec.extra = test::multiboot_header(0x3);
  spec.extra[8] ^= 1;
  auto img = classify(build_elf(spec));
  ASSERT_TRUE(img.ok()) << img.error().message;
  EXPECT_EQ(img->kind(), ImageKind::UserProgram);
}

TEST(KernelImage, RecognisesUserProgram) {
  auto img = classify(build_elf({}));
  ASSERT_TRUE(img.ok()) << img.error().message;
  EXPECT_EQ(img->kind(), ImageKind::UserProgram);
  ASSERT_EQ(img->segments().size(), 1u);
  EXPECT_EQ(img->segments()[0].vaddr, 0x08048000u);
  EXPECT_TRUE(img->segments()[0].exec);
  EXPECT_FALSE(img->segments()[0].write);
}

TEST(KernelImage, RefusesGarbage) {
  expect_refused({}, "empty");
  expect_refused({'h', 'e', 'l', 'l', 'o', '\n'}, "neither ELF nor a Linux bzImage");
  expect_refused({0x7f, 'E', 'L', 'F'}, "truncated");
  auto elf = build_elf({});
  elf.resize(40);
  expect_refused(elf, "truncated");
}

TEST(KernelImage, RefusesOtherElfs) {
  auto elf64 = build_elf({});
  elf64[EI_CLASS] = ELFCLASS64;
  expect_refused(elf64, "64-bit");
  ElfSpec arm;
  arm.machine = EM_ARM;
  expect_refused(build_elf(arm), "not i386");
  ElfSpec pie;
  pie.type = ET_DYN;
  expect_refused(build_elf(pie), "ET_DYN");
  ElfSpec rel;
  rel.type = ET_REL;
  expect_refused(build_elf(rel), "not an executable");
}

TEST(KernelImage, RefusesBadSegments) {
  ElfSpec shrunk;
  shrunk.memsz_delta = -4;
  expect_refused(build_elf(shrunk), "p_filesz > p_memsz");

  auto outside = build_elf({});
  outside.resize(outside.size() - 1);  // p_filesz now runs past the end of the file
  expect_refused(outside, "outside the file");

  ElfSpec wraps;
  wraps.vaddr = 0xfffff000;
  wraps.memsz_delta = 0x1000;
  expect_refused(build_elf(wraps), "4 GiB");

  auto phdrs = build_elf({});
  Elf32_Ehdr eh;
  std::memcpy(&eh, phdrs.data(), sizeof eh);
  eh.e_phoff = 0xfffffff0;
  std::memcpy(phdrs.data(), &eh, sizeof eh);
  expect_refused(phdrs, "program headers lie outside");

  auto entry = build_elf({});
  std::memcpy(&eh, entry.data(), sizeof eh);
  eh.e_entry = 0x1000;
  std::memcpy(entry.data(), &eh, sizeof eh);
  expect_refused(entry, "entry point");
}

TEST(KernelImage, LoadNamesMissingFile) {
  auto img = KernelImage::load("/nonexistent/bt86/kernel");
  ASSERT_FALSE(img.ok());
  EXPECT_EQ(img.error().message, "/nonexistent/bt86/kernel: No such file or directory");
  auto dir = KernelImage::load("/");
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().message, "/: Is a directory");
}

}  // namespace
}  // namespace bt86::monitor
