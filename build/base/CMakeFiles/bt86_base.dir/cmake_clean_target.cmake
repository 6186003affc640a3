file(REMOVE_RECURSE
  "libbt86_base.a"
)
