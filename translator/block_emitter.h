// Block emitter: turns a DecodedBlock into 64-bit host code with AsmJit, at a
// known host address, and records the metadata later slices need: the host
// offset of every guest instruction boundary (precise faults) and every exit
// site (chaining patches these).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "translator/block_builder.h"
#include "translator/context.h"

namespace bt86::translator {

struct InsnBoundary {
  uint32_t host_offset;  // first host byte of the code for this guest instruction
  uint32_t guest_eip;
  // Precise-fault fixup for a fault inside this instruction's host code
  // (translator/README.md, "Precise faults"): 0 none, else 1 + the x86 number
  // (0 = EAX ... 7 = EDI) of a guest register that the expansion borrowed and
  // saved whole in R13; the fault handler puts R13 back into it.
  uint8_t restore_from_r13 = 0;
  // A string instruction with non-zero segment bases runs on ESI/EDI plus
  // these bases: the fault handler subtracts them again (low 32 bits).
  uint32_t esi_bias = 0, edi_bias = 0;
};

// One way out of a block. A direct exit (kBlockEnd with a known target) is
//   mov dword [r15+next_eip], target ; mov dword [r15+exit_reason], reason ; call site_stub
// exactly kExitSiteSize bytes; the call's return address tells the dispatcher
// which site was taken. Chaining overwrites its first 5 bytes with a jmp rel32
// to the target block; unlinking writes the original 5 bytes back.
// kIndirect exits have no fixed target (the in-TC lookup follows them).
struct ExitSite {
  uint32_t host_offset;
  uint32_t target_eip;
  ExitReason reason;
  bool linked = false;  // currently patched into a jmp to the target block
  // Linked, but its bytes are the unlinked ones for now: an exit request cut
  // the links of the block that was running (Translator::cut_links), and
  // the dispatcher puts them back (heal_cut) once it has seen the request.
  bool cut = false;
  // Nonzero: the host offset of the rel32 of a jcc whose taken arm is this
  // site. Linking points that rel32 straight at the target block as well
  // (the taken arm then costs one branch, not a jcc plus a jmp); unlinking
  // points it back at the site.
  uint32_t branch_rel_offset = 0;
};
inline constexpr uint32_t kExitSiteSize = 21;

struct Block;
// A chained jump into a block: exit `exit_index` of `from`.
struct IncomingLink {
  Block* from;
  uint32_t exit_index;
};

struct Block {
  uint32_t guest_eip = 0;
  uint32_t guest_end = 0;  // first guest byte after the block
  uint32_t guest_insns = 0;
  const uint8_t* host = nullptr;  // nullptr: the first instruction is not translated (stop_reason)
  uint32_t host_size = 0;
  // Where execution enters (dispatcher, links, lookup): after the
  // exit-request leaving path that starts the block (EmitOptions::entry_check).
  uint32_t entry_offset = 0;
  const uint8_t* entry() const { return host + entry_offset; }
  // Where chained jumps from other blocks (and from itself) enter: past the
  // exit-request poll (EmitOptions::poll_page), so that a hot loop of linked
  // blocks does not pay a load per iteration. An exit request instead cuts
  // the links of the block that is running (Translator::cut_links). Equal to
  // entry_offset without a poll page.
  uint32_t link_offset = 0;
  const uint8_t* link_entry() const { return host + link_offset; }
  BlockEnd end = BlockEnd::kStop;
  std::string stop_reason;
  std::vector<InsnBoundary> boundaries;  // ascending host_offset; the last one is the final exit
  std::vector<ExitSite> exits;
  // Guest physical pages holding the block's bytes (GuestCodeReader::phys_page).
  uint32_t pages[2] = {0, 0};
  uint8_t page_count = 0;
  // Chained jumps that land here (unlinked when this block is dropped).
  std::vector<IncomingLink> incoming;
  bool dead = false;       // dropped (self-modifying code): never entered or linked again
  bool ephemeral = false;  // one-instruction block run once after a write to its own page

  // Guest EIP of the instruction whose host code contains host_offset.
  uint32_t guest_eip_at(uint32_t host_offset) const;
};

struct EmitOptions {
  uint64_t exit_stub = 0;  // plain exit: registers back to CpuState, return to C++
  // Nonzero: direct exits `call` this stub (which records the site) instead of
  // jumping to exit_stub, so that the dispatcher can chain them.
  uint64_t site_stub = 0;
  // Block entry tests for an exit request and leaves with kExitRequested and
  // next_eip = the block's EIP. With poll_page: one load from that page,
  // which Translator::request_exit() makes PROT_NONE (the fault is the exit);
  // without: TranslatorContext::exit_requested through jrcxz (flag-free).
  // Only the poll is skipped by chained jumps (Block::link_offset).
  bool entry_check = false;
  uint64_t poll_page = 0;
  // ret / jmp r/m32 / call r/m32 look the target up in TranslatorContext::lookup
  // and jump there on a hit; a miss exits kIndirect.
  bool inline_lookup = false;
  // Count block entries and lookup hits in TranslatorContext (flag-free lea increments).
  bool count = false;
  // The guest's x87/SSE state is loaded lazily: before the block's first
  // instruction that uses it (uses_fpu_state), call TranslatorContext::fpu_hook.
  bool lazy_fpu = false;
};

// Emits the block's host code as if placed at host_address. Fills meta (not
// host/host_size) and returns the bytes. The first overload: plain exits to
// exit_stub, no entry check, no lookup (what the golden tests show).
Result<std::vector<uint8_t>> emit_block(const DecodedBlock& block, uint64_t host_address,
                                        uint64_t exit_stub, Block& meta);
Result<std::vector<uint8_t>> emit_block(const DecodedBlock& block, uint64_t host_address,
                                        const EmitOptions& options, Block& meta);

// The first kChainPatchSize bytes of an unlinked direct exit site to target
// (what unlinking writes back), and the jmp rel32 that links it.
inline constexpr uint32_t kChainPatchSize = 5;
void unlinked_site_bytes(uint32_t target_eip, uint8_t out[kChainPatchSize]);
void linked_site_bytes(uint64_t site_address, uint64_t target_host, uint8_t out[kChainPatchSize]);
// Points the rel32 at block.host + site.branch_rel_offset (if any) at target
// (linking) or back at the site itself (unlinking).
void patch_branch_rel(const Block& block, const ExitSite& site, uint64_t target);

}  // namespace bt86::translator
