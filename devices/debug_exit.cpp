// Debug-exit port: see debug_exit.h.
#include "devices/debug_exit.h"

namespace bt86::devices {

uint32_t DebugExit::io_read(uint16_t offset, unsigned size) {
  note_unexpected("read", offset, 0);
  return all_ones(size);
}

void DebugExit::io_write(uint16_t offset, unsigned, uint32_t value) {
  if (offset != 0) {
    note_unexpected("write past the exit register", offset, value);
    return;
  }
  if (m_state.exit_requested) return;  // the first request wins
  m_state.exit_requested = true;
  m_state.value = value;
  m_state.exit_status = (value << 1) | 1;
  if (m_on_exit) m_on_exit(m_state.exit_status);
}

}  // namespace bt86::devices
