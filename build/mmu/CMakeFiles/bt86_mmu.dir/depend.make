# Empty dependencies file for bt86_mmu.
# This may be replaced when dependencies are built.
