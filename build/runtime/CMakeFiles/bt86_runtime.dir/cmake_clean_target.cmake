file(REMOVE_RECURSE
  "libbt86_runtime.a"
)
