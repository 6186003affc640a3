file(REMOVE_RECURSE
  "libbt86_mmu.a"
)
