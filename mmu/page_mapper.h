// PageMapper: "map this guest page here". The shadow MMU and the loaders talk
// to this interface only. Today's implementation (GuestWindow) changes the
// host page tables of this process; a later one will drive a stub process
// that maps only guest memory (DESIGN.md §6).
#pragma once

#include "base/result.h"
#include "mmu/address.h"

namespace bt86::mmu {

class PageMapper {
 public:
  virtual ~PageMapper() = default;
  // Maps guest physical [pa, pa+len) at guest linear [va, va+len) with prot.
  // va, pa and len are page aligned. Replaces whatever was mapped there.
  virtual Status map(GuestVirt va, GuestPhys pa, uint64_t len, Prot prot) = 0;
  // Drops [va, va+len): later accesses fault again.
  virtual Status unmap(GuestVirt va, uint64_t len) = 0;
  // Changes the protection of an existing mapping.
  virtual Status protect(GuestVirt va, uint64_t len, Prot prot) = 0;
  // Drops [va, va+len) as unmap() does (later accesses fault), but keeps
  // what is mapped there inaccessible so that a later protect() of the range
  // gives back exactly the same guest physical pages without a new mapping
  // (GuestWindow: mprotect PROT_NONE, the host keeps its page-table entries).
  // The caller must protect() a parked page back only when it wants the page
  // it last mapped there, and must map() or unmap() it otherwise.
  virtual Status park(GuestVirt va, uint64_t len) = 0;
};

}  // namespace bt86::mmu
