#include "pg/slot_links.h"

#include <cstring>
#include <string>
#include <vector>

namespace ebpfc::pg {
namespace {

// Joins entries with '\n' into dst (size n). Entries that do not fit are
// replaced by one "(N more)" entry.
template <size_t N>
void join_into(char (&dst)[N], const std::vector<std::string>& entries) {
  std::string out;
  for (size_t i = 0; i < entries.size(); i++) {
    const std::string more = "(" + std::to_string(entries.size() - i) + " more)";
    const size_t need = out.size() + (out.empty() ? 0 : 1) + entries[i].size();
    // room for this one, and for the "more" entry should a later one not fit
    const size_t reserve = i + 1 < entries.size() ? 1 + more.size() + 4 : 0;
    if (need + reserve >= N) {
      if (!out.empty()) out += '\n';
      out += more;
      break;
    }
    if (!out.empty()) out += '\n';
    out += entries[i];
  }
  strlcpy(dst, out.c_str(), N);
}

// A text[] of the '\n'-separated entries. Called from a PostgreSQL function:
// only palloc'd memory here, nothing with a destructor, since an error
// longjmps out of it.
Datum text_array(const char* joined) {
  int n = 0;
  for (const char* p = joined; *p != '\0'; n++) {
    const char* end = std::strchr(p, '\n');
    p = end ? end + 1 : p + std::strlen(p);
  }
  Datum* items = static_cast<Datum*>(palloc(sizeof(Datum) * (n > 0 ? n : 1)));
  int i = 0;
  for (const char* p = joined; *p != '\0' && i < n; i++) {
    const char* end = std::strchr(p, '\n');
    const size_t len = end ? static_cast<size_t>(end - p) : std::strlen(p);
    items[i] = PointerGetDatum(cstring_to_text_with_len(p, static_cast<int>(len)));
    p = end ? end + 1 : p + len;
  }
  return PointerGetDatum(construct_array(items, n, TEXTOID, -1, false, TYPALIGN_INT));
}

}  // namespace

void publish_slot_links(int slot, const CaptureLinks& links) {
  SlotLinks built;
  std::memset(&built, 0, sizeof(built));
  strlcpy(built.mode, links.mode, sizeof(built.mode));
  strlcpy(built.pattern, links.target.c_str(), sizeof(built.pattern));
  join_into(built.attached, links.attached);
  join_into(built.failed, links.failed);
  join_into(built.skipped, links.skipped);
  SharedState* sh = shared();
  if (!sh || slot < 0 || slot >= sh->nslots) return;
  SpinLockAcquire(&sh->mutex);
  std::memcpy(&sh->slots[slot].links, &built, sizeof(built));
  SpinLockRelease(&sh->mutex);
}

void clear_slot_links(int slot) {
  SharedState* sh = shared();
  if (!sh || slot < 0 || slot >= sh->nslots) return;
  SpinLockAcquire(&sh->mutex);
  std::memset(&sh->slots[slot].links, 0, sizeof(SlotLinks));
  SpinLockRelease(&sh->mutex);
}

void slot_links_datums(const SlotLinks& links, Datum* values, bool* nulls) {
  values[0] = CStringGetTextDatum(links.mode);
  nulls[0] = links.mode[0] == '\0';
  values[1] = CStringGetTextDatum(links.pattern);
  nulls[1] = links.pattern[0] == '\0';
  values[2] = text_array(links.attached);
  values[3] = text_array(links.failed);
  values[4] = text_array(links.skipped);
  nulls[2] = nulls[3] = nulls[4] = false;
}

}  // namespace ebpfc::pg
