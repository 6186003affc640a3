# CMake generated Testfile for 
# Source directory: /work/main
# Build directory: /work/main/build
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
subdirs("base")
subdirs("mmu")
subdirs("runtime")
subdirs("translator")
subdirs("devices")
subdirs("monitor")
subdirs("samples")
subdirs("tests")
subdirs("bench")
