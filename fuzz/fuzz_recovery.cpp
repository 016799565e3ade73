// libFuzzer target: jbd2 recovery over arbitrary journal bytes.
//
// The input is a journal of up to 64 blocks of 1 KiB (block 0 = superblock).
// The first input byte chooses whether the superblock is first made
// plausible (magic, version, geometry, features from the input, checksum
// recomputed), so that the fuzzer spends its time in the log passes rather
// than being refused at the door. Checked:
//  - recovery terminates, with no sanitizer report;
//  - a refused journal writes nothing, neither home blocks nor the journal;
//  - home blocks are only written inside the filesystem.
#include <jbtree/journal/jbd2_recovery.hpp>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

using namespace jbtree;

namespace {

constexpr std::uint32_t bs = 1024;
constexpr std::uint32_t home_blocks = 256;

struct memory_journal {
    std::vector<unsigned char> log;  // journal blocks
    std::vector<unsigned char> home; // filesystem blocks
    std::uint64_t writes = 0;

    std::uint32_t block_size() const noexcept { return bs; }
    std::uint32_t journal_blocks() const noexcept { return static_cast<std::uint32_t>(log.size() / bs); }
    errc read_log(std::uint32_t j, unsigned char* out) noexcept {
        if (j >= journal_blocks()) return errc::io;
        std::memcpy(out, log.data() + std::size_t{j} * bs, bs);
        return errc::ok;
    }
    errc write_log(std::uint32_t j, const unsigned char* in) noexcept {
        if (j >= journal_blocks()) return errc::io;
        ++writes;
        std::memcpy(log.data() + std::size_t{j} * bs, in, bs);
        return errc::ok;
    }
    errc write_home(std::uint64_t b, const unsigned char* in) noexcept {
        if (b >= home_blocks) return errc::range;
        ++writes;
        std::memcpy(home.data() + b * bs, in, bs);
        return errc::ok;
    }
    errc flush() noexcept { return errc::ok; }
};

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const bool plausible = data[0] & 1;
    const std::uint32_t features = data[1];
    data += 2;
    size -= 2;
    std::size_t blocks = (size + bs - 1) / bs;
    if (blocks < 2) blocks = 2;
    if (blocks > 64) blocks = 64;
    memory_journal j;
    j.log.assign(blocks * bs, 0);
    j.home.assign(std::size_t{home_blocks} * bs, 0);
    std::memcpy(j.log.data(), data, size < j.log.size() ? size : j.log.size());
    if (plausible) {
        auto* sb = reinterpret_cast<jbd2::superblock*>(j.log.data());
        sb->s_header.h_magic.set(jbd2::magic);
        sb->s_header.h_blocktype.set(static_cast<std::uint32_t>(jbd2::block_type::superblock_v2));
        sb->s_blocksize.set(bs);
        sb->s_maxlen.set(static_cast<std::uint32_t>(blocks));
        sb->s_first.set(1);
        sb->s_start.set(1 + sb->s_start.get() % static_cast<std::uint32_t>(blocks - 1));
        sb->s_nr_users.set(1);
        sb->s_feature_compat.set(features >> 7);
        sb->s_feature_incompat.set(features & 0x1F & ~jbd2::incompat_fast_commit);
        sb->s_feature_ro_compat.set(0);
        sb->s_checksum_type = jbd2::checksum_type_crc32c;
        sb->s_checksum.set(jbd2::superblock_checksum(j.log.data()));
    }
    const std::vector<unsigned char> log_before = j.log;
    std::vector<unsigned char> a(bs), b(bs);
    std::vector<jbd2::revoke_entry> slots(512);
    jbd2::recovery_info info;
    const errc e = jbd2::recover(j, {a.data(), b.data(), slots.data(), slots.size()}, info);
    (void)e;
    if (info.refused != jbd2::sb_problem::none && (j.writes != 0 || j.log != log_before)) __builtin_trap();
    return 0;
}
