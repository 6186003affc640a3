# CMake generated Testfile for 
# Source directory: /work/main/monitor
# Build directory: /work/main/build/monitor
# 
# This file includes the relevant testing commands required for 
# testing this directory and lists subdirectories to be tested as well.
