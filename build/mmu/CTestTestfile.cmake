# CMake generated Testfile for 
# Source directory: /work/main/mmu
# Build directory: /work/main/build/mmu
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
