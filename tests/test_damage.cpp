// Damage campaign (issue 17): jbtree-e2fs on images whose stored maps or
// whose filesystem metadata were damaged, a few hundred variants from a
// fixed seed (JBTREE_DAMAGE_VARIANTS, JBTREE_DAMAGE_SEED for longer runs:
// scripts/damage_campaign.sh).
//
// Two images made by mkfs.ext4 -d from a generated tree (4 KiB blocks with
// metadata_csum; 1 KiB blocks without), a file sharing blocks with others
// (so the refcount map is not empty), maps built and stored. The answers of
// the undamaged image are the reference: owner of every block, paths of
// every inode, refcount of every block, check. Then, one variant at a time:
//
//   map-flip    bytes flipped in the map file (inode 5: the volume's
//               superblock, bitmap, nodes, free blocks), checksums left bad;
//   map-node    one node changed and its checksum recomputed (checksum-valid
//               but wrong): keys swapped, a separator or high key moved, a
//               child pointer redirected, tree id, level, count, self or
//               sibling fields changed, record fields out of range;
//   map-lie     a change no reader can see in one node or one path (another
//               valid owner, offset, refcount, name, parent generation; a
//               lowered high key): queries may answer it, check must not
//               call the maps clean;
//   fs-flip     bytes flipped in the filesystem's own metadata (superblock,
//               group descriptors, inode table, directory and extent blocks).
//
// For every variant, owner, paths and refcount (on a sample of blocks and
// inodes, including those the damaged node holds) and check, with and
// without --json: the exit status is documented (0, 1, 3, 4), never a
// sanitizer's, a signal's or the timeout's; a failure says why on stderr
// (for map damage: naming a block) and with --json is one object whose
// error/status/message agree with it; read-only commands leave the image
// byte for byte as it was. For map damage (flip and node) every command
// either answers exactly as the reference or refuses; after a lie check
// refuses. fs damage may change the answers (the filesystem changed).
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include "test_support.hpp"

#include <jbtree/ext2fs/map_file.hpp>
#include <jbtree/node/header.hpp>
#include <jbtree/node/layout.hpp>

#include "jbtree/ext2fs/libext2fs.hpp"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <random>
#include <set>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using namespace jbtree;

namespace {

// The tool runs under the sanitizers of this build: their reports must not
// look like the tool's own exit codes (0..4).
const std::string tool_env = "ASAN_OPTIONS=exitcode=99 UBSAN_OPTIONS=halt_on_error=1:exitcode=98";

std::uint64_t env_u64(const char* name, std::uint64_t dflt) {
    const char* v = std::getenv(name);
    return v && *v ? std::strtoull(v, nullptr, 0) : dflt;
}

int run(const std::string& cmd) {
    const int st = std::system(cmd.c_str());
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

std::string read_all(const fs::path& p) {
    std::string s;
    if (FILE* f = std::fopen(p.c_str(), "rb")) {
        char buf[1 << 16];
        std::size_t n;
        while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) s.append(buf, n);
        std::fclose(f);
    }
    return s;
}

struct result {
    int status = -1; // exit status; 128 + signal
    std::string out, err;
};

// One run of the tool under timeout; stdout and stderr apart.
result run_tool(const std::string& args, const fs::path& dir) {
    const fs::path errf = dir / "stderr";
    const std::string cmd = "timeout -k 5 60 env " + tool_env + " " + JBTREE_E2FS_TOOL + " " + args + " 2>'" + errf.string() + "'";
    result r;
    FILE* p = popen(cmd.c_str(), "r");
    if (!p) return r;
    char buf[65536];
    std::size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
    const int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
    r.err = read_all(errf);
    return r;
}

std::string join(const std::vector<std::uint64_t>& v) {
    std::string s;
    for (auto x : v) s += " " + std::to_string(x);
    return s;
}

// ---- a little JSON -------------------------------------------------------------------

// Is `t` exactly one JSON value (then a newline)? Strings decoded into the
// top-level object's members (other values kept as written).
struct json_check {
    bool ok = false;
    std::map<std::string, std::string> members;
};
json_check parse_json(const std::string& t) {
    json_check o;
    std::size_t i = 0;
    auto ws = [&] {
        while (i < t.size() && std::strchr(" \t\r\n", t[i]) && t[i]) ++i;
    };
    auto str = [&](std::string* out) {
        if (i >= t.size() || t[i] != '"') return false;
        for (++i; i < t.size(); ++i) {
            const char c = t[i];
            if (c == '"') return ++i, true;
            if (static_cast<unsigned char>(c) < 0x20) return false;
            if (c != '\\') {
                if (out) *out += c;
                continue;
            }
            if (++i >= t.size()) return false;
            const char e = t[i];
            if (e == 'u') {
                if (i + 4 >= t.size()) return false;
                const std::string hex = t.substr(i + 1, 4);
                if (hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) return false;
                if (out) *out += static_cast<char>(std::strtoul(hex.c_str(), nullptr, 16) & 0xFF);
                i += 4;
            } else if (std::strchr("\"\\/bfnrt", e) && e) {
                if (out) *out += e == 'n' ? '\n' : e == 't' ? '\t' : e == 'r' ? '\r' : e == 'b' ? '\b' : e == 'f' ? '\f' : e;
            } else return false;
        }
        return false;
    };
    auto value = [&](auto& self, std::string* out, int depth) -> bool {
        ws();
        if (i >= t.size() || depth > 64) return false;
        const std::size_t start = i;
        const char c = t[i];
        if (c == '"') return str(out);
        if (c == '{' || c == '[') {
            const char close = c == '{' ? '}' : ']';
            ++i;
            ws();
            if (i < t.size() && t[i] == close) return ++i, true;
            for (;;) {
                std::string k, v;
                if (c == '{') {
                    ws();
                    if (!str(&k)) return false;
                    ws();
                    if (i >= t.size() || t[i++] != ':') return false;
                }
                if (!self(self, depth == 0 && c == '{' ? &v : nullptr, depth + 1)) return false;
                if (depth == 0 && c == '{') {
                    if (o.members.count(k)) return false;
                    o.members[k] = v;
                }
                ws();
                if (i < t.size() && t[i] == ',') {
                    ++i;
                    continue;
                }
                if (i < t.size() && t[i] == close) return ++i, true;
                return false;
            }
        }
        bool lit = false;
        for (const char* l : {"true", "false", "null"})
            if (t.compare(i, std::strlen(l), l) == 0) i += std::strlen(l), lit = true;
        if (!lit) {
            if (t[i] == '-') ++i;
            while (i < t.size() && (std::isdigit(static_cast<unsigned char>(t[i])) || std::strchr(".eE+-", t[i])) && t[i]) ++i;
            if (i == start || !std::isdigit(static_cast<unsigned char>(t[i - 1]))) return false;
        }
        if (out) *out = t.substr(start, i - start);
        return true;
    };
    ws();
    if (i >= t.size() || t[i] != '{') return o;
    if (!value(value, nullptr, 0)) return o;
    o.ok = i + 1 == t.size() && t[i] == '\n';
    return o;
}

// The end of the JSON object starting at `at` (one past its '}').
std::size_t object_end(const std::string& t, std::size_t at) {
    int depth = 0;
    bool in_str = false;
    for (std::size_t i = at; i < t.size(); ++i) {
        const char c = t[i];
        if (in_str) {
            if (c == '\\') ++i;
            else if (c == '"') in_str = false;
        } else if (c == '"') in_str = true;
        else if (c == '{') ++depth;
        else if (c == '}' && --depth == 0) return i + 1;
    }
    return std::string::npos;
}

// Each {"<key>":N,...} item of a query's JSON answer, by N.
std::map<std::uint64_t, std::string> json_items(const std::string& t, const std::string& key) {
    std::map<std::uint64_t, std::string> m;
    const std::string marker = "{\"" + key + "\":";
    for (std::size_t at = t.find(marker); at != std::string::npos;) {
        const std::size_t end = object_end(t, at);
        if (end == std::string::npos) break;
        m[std::strtoull(t.c_str() + at + marker.size(), nullptr, 10)] = t.substr(at, end - at);
        at = t.find(marker, end);
    }
    return m;
}

// Text answers "N\t..." after the header, grouped by N (each line with its newline).
std::map<std::uint64_t, std::string> text_items(const std::string& t) {
    std::map<std::uint64_t, std::string> m;
    std::size_t at = t.find('\n');
    while (at != std::string::npos && at + 1 < t.size()) {
        const std::size_t end = t.find('\n', at + 1);
        const std::string line = t.substr(at + 1, end == std::string::npos ? std::string::npos : end - at);
        m[std::strtoull(line.c_str(), nullptr, 10)] += line;
        at = end;
    }
    return m;
}

// ---- the images ----------------------------------------------------------------------

enum tree_slot { rmap_tree = 0, refcount_tree = 1, parent_tree = 2 };
const char* const tree_name[3] = {"rmap", "refcount", "parent"};

struct node_info {
    std::uint64_t block = 0;
    int tree = 0;
    unsigned level = 0;
    std::uint64_t parent = 0; // 0 for a root
    std::uint32_t index = 0;  // entry in the parent
};

// A query: its command and the reference answer per item.
struct reference {
    std::map<std::uint64_t, std::string> text, json;
    std::set<std::uint64_t> missing; // no owner / no path
};

struct image_case {
    std::string name;
    fs::path dir, img;
    std::string clean; // the image's bytes after build
    std::uint32_t bs = 0;
    std::uint64_t nblocks = 0, ninodes = 0;
    std::uint64_t map_first = 0, map_blocks = 0, bitmap_start = 0, data_start = 0;
    std::uint32_t seed = 0;
    std::uint32_t tree_height[3] = {};
    std::vector<node_info> nodes;
    std::set<std::uint64_t> node_blocks;
    reference owner, paths, refcount;
    std::string check_text, check_json;
    std::vector<std::uint64_t> shared, used_inodes;
    // Filesystem metadata: [byte offset, length) ranges worth damaging.
    std::vector<std::pair<std::uint64_t, std::uint64_t>> sb, gdt, itable, dirs, extents;
};

// A generated tree: directories, files of 0..48 KiB (some sparse), hard
// links, symlinks.
void make_tree(const fs::path& tree, std::mt19937_64& rng) {
    fs::create_directories(tree);
    std::vector<fs::path> dirs{tree};
    for (int d = 0; d < 24; ++d) {
        fs::path p = dirs[rng() % dirs.size()] / ("dir" + std::to_string(d));
        fs::create_directory(p);
        dirs.push_back(p);
    }
    std::vector<fs::path> files;
    for (int f = 0; f < 320; ++f) {
        fs::path p = dirs[rng() % dirs.size()] / ("file" + std::to_string(f));
        std::string data(rng() % 49152, '\0');
        for (char& c : data) c = static_cast<char>(rng());
        std::ofstream(p, std::ios::binary) << data;
        if (rng() % 8 == 0) fs::resize_file(p, data.size() + 65536 * (1 + rng() % 4)); // a hole at the end
        files.push_back(p);
    }
    for (int l = 0; l < 48; ++l)
        fs::create_hard_link(files[rng() % files.size()], dirs[rng() % dirs.size()] / ("link" + std::to_string(l)));
    fs::create_symlink("file1", tree / "short-link");
    fs::create_symlink(std::string(300, 'x'), tree / "long-link");
}

// Blocks of a file or directory, through libext2fs.
int collect_blocks(ext2_filsys, blk64_t* blocknr, e2_blkcnt_t, blk64_t, int, void* priv) {
    static_cast<std::vector<std::uint64_t>*>(priv)->push_back(*blocknr);
    return 0;
}

template <class Traits>
void walk(image_case& c, int tree, std::uint64_t block, unsigned level, std::uint64_t parent, std::uint32_t index) {
    c.nodes.push_back({block, tree, level, parent, index});
    c.node_blocks.insert(block);
    if (level == 0) return;
    const node_layout<Traits> lay(c.bs);
    const auto* n = reinterpret_cast<const unsigned char*>(c.clean.data() + block * c.bs);
    for (std::uint32_t i = 0; i < node_layout<Traits>::count(n); ++i)
        walk<Traits>(c, tree, node_layout<Traits>::child(lay.payload(n, false, i)), level - 1, block, i);
}

// mkfs, share blocks, build, record the reference answers.
bool make_case(image_case& c, const std::string& opts, std::uint64_t shared_count, std::mt19937_64& rng) {
    const fs::path tree = c.dir / "tree";
    if (!fs::exists(tree)) make_tree(tree, rng);
    c.img = c.dir / (c.name + ".img");
    REQUIRE(run("mkfs.ext4 -q -F " + opts + " -N 1024 -U 4a425452-0017-4d61-6765-000000000017 -E hash_seed=4a425452-0017-0000-0000-000000000017 -d '" +
                tree.string() + "' '" + c.img.string() + "' 16M >/dev/null 2>&1") == 0);
    // Blocks of regular files, to be shared by one more file (refcount 2),
    // every fifth by a second one (3): the refcount map gets records.
    {
        ext2_filsys efs = nullptr;
        REQUIRE(ext2fs_open2(c.img.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &efs) == 0);
        c.bs = efs->blocksize;
        c.nblocks = ext2fs_blocks_count(efs->super);
        ext2fs_close_free(&efs);
        std::vector<std::uint64_t> all;
        for (std::uint64_t b = 0; b < c.nblocks; ++b) all.push_back(b);
        const result owners = run_tool("owner --json '" + c.img.string() + "'" + join(all), c.dir);
        std::vector<std::uint64_t> data;
        for (const auto& [b, item] : json_items(owners.out, "block")) {
            const auto o = item.find("{\"owner\":");
            if (o == std::string::npos || !std::isdigit(static_cast<unsigned char>(item[o + 9])) ||
                item.find("{\"owner\":", o + 1) != std::string::npos || item.find("\"xattr\":false,\"extent_tree\":false") == std::string::npos)
                continue;
            data.push_back(b);
        }
        std::vector<std::uint64_t> pick;
        for (std::uint64_t b : data)
            if (pick.size() < shared_count && (pick.empty() || b > pick.back() + 1)) pick.push_back(b);
        REQUIRE(pick.size() == shared_count);
        std::ofstream cmds(c.dir / "share.cmds");
        cmds << "write /dev/null sharer\nwrite /dev/null sharer2\n";
        for (std::size_t k = 0; k < pick.size(); ++k) {
            cmds << "sif /sharer bmap[" << k << "] " << pick[k] << "\n";
            if (k % 5 == 0) cmds << "sif /sharer2 bmap[" << k << "] " << pick[k] << "\n";
        }
        cmds << "sif /sharer size " << pick.size() * c.bs << "\nsif /sharer2 size " << pick.size() * c.bs << "\n";
        cmds.close();
        REQUIRE(run("debugfs -w -f '" + (c.dir / "share.cmds").string() + "' '" + c.img.string() + "' >/dev/null 2>&1") == 0);
        c.shared = pick;
    }
    const result b = run_tool("build '" + c.img.string() + "'", c.dir);
    INFO(b.out << b.err);
    REQUIRE(b.status == 0);
    c.clean = read_all(c.img);

    // Geometry, the map file and its trees, the metadata to damage.
    ext2_filsys efs = nullptr;
    REQUIRE(ext2fs_open2(c.img.c_str(), nullptr, EXT2_FLAG_64BITS, 0, 0, unix_io_manager, &efs) == 0);
    c.bs = efs->blocksize;
    c.nblocks = ext2fs_blocks_count(efs->super);
    c.ninodes = efs->super->s_inodes_count;
    ext2fs_adapter::map_file mf;
    REQUIRE(ext2fs_adapter::locate_map_file(efs, mf) == errc::ok);
    REQUIRE(mf.state == ext2fs_adapter::map_file_state::present);
    c.map_first = mf.first;
    c.map_blocks = mf.blocks;
    const auto* vsb = reinterpret_cast<const unsigned char*>(c.clean.data() + c.map_first * c.bs);
    c.bitmap_start = load_le<std::uint64_t>(vsb + 0x38);
    c.data_start = load_le<std::uint64_t>(vsb + 0x40);
    c.seed = load_le<std::uint32_t>(vsb + 0x50);
    for (int t = 0; t < 3; ++t) {
        const unsigned char* a = vsb + 0x80 + 32 * t;
        const std::uint64_t root = load_le<std::uint64_t>(a);
        c.tree_height[t] = load_le<std::uint16_t>(a + 20);
        if (!root) continue;
        if (t == rmap_tree) walk<rmap_traits>(c, t, root, c.tree_height[t] - 1, 0, 0);
        if (t == refcount_tree) walk<refcount_traits>(c, t, root, c.tree_height[t] - 1, 0, 0);
        if (t == parent_tree) walk<parent_map_traits<>>(c, t, root, c.tree_height[t] - 1, 0, 0);
    }
    const std::uint64_t sb_off = 1024;
    c.sb.push_back({sb_off, 1024});
    const std::uint64_t desc = EXT2_DESC_SIZE(efs->super);
    c.gdt.push_back({(efs->super->s_first_data_block + 1) * c.bs, desc * efs->group_desc_count});
    const std::uint64_t isz = EXT2_INODE_SIZE(efs->super);
    for (ext2_ino_t ino = 1; ino <= efs->super->s_inodes_count; ++ino) {
        ext2_inode inode{};
        if (ext2fs_read_inode(efs, ino, &inode) || inode.i_links_count == 0) continue;
        c.used_inodes.push_back(ino);
        const dgrp_t g = (ino - 1) / efs->super->s_inodes_per_group;
        c.itable.push_back({ext2fs_inode_table_loc(efs, g) * c.bs + ((ino - 1) % efs->super->s_inodes_per_group) * isz, isz});
        std::vector<std::uint64_t> blocks;
        if (LINUX_S_ISDIR(inode.i_mode)) {
            REQUIRE(ext2fs_block_iterate3(efs, ino, BLOCK_FLAG_READ_ONLY, nullptr, &collect_blocks, &blocks) == 0);
            for (auto blk : blocks) c.dirs.push_back({blk * c.bs, c.bs});
        }
    }
    ext2fs_close_free(&efs);

    // The reference answers.
    std::vector<std::uint64_t> all_blocks, all_inodes;
    for (std::uint64_t b = 0; b < c.nblocks; ++b) all_blocks.push_back(b);
    for (std::uint64_t i = 1; i <= c.ninodes; ++i) all_inodes.push_back(i);
    const std::string q = " '" + c.img.string() + "'";
    auto ref = [&](reference& r, const std::string& cmd, const std::vector<std::uint64_t>& items, const char* key) {
        const result t = run_tool(cmd + q + join(items), c.dir);
        const result j = run_tool(cmd + " --json" + q + join(items), c.dir);
        REQUIRE((t.status == 0 || t.status == 1));
        REQUIRE(j.status == t.status);
        r.text = text_items(t.out);
        r.json = json_items(j.out, key);
        REQUIRE(r.json.size() == items.size());
        for (auto x : items) {
            if (!r.text.count(x)) r.missing.insert(x); // paths: no line at all
            else if (r.text[x].find("<block not found>") != std::string::npos) r.missing.insert(x);
        }
    };
    ref(c.owner, "owner", all_blocks, "block");
    ref(c.paths, "paths", all_inodes, "inode");
    ref(c.refcount, "refcount", all_blocks, "block");
    for (const auto& [blk, item] : c.owner.json)
        if (item.find("\"extent_tree\":true") != std::string::npos) c.extents.push_back({blk * c.bs, c.bs});
    const result ct = run_tool("check" + q, c.dir), cj = run_tool("check --json" + q, c.dir);
    INFO(ct.out << ct.err << cj.out);
    REQUIRE(ct.status == 0);
    REQUIRE(cj.status == 0);
    c.check_text = ct.out;
    c.check_json = cj.out;
    REQUIRE(read_all(c.img) == c.clean);
    return true;
}

// ---- variants ------------------------------------------------------------------------

enum damage_class { map_flip, map_node, map_lie, fs_flip, class_count };
const char* const class_name[class_count] = {"map-flip", "map-node", "map-lie", "fs-flip"};

struct variant {
    damage_class cls = map_flip;
    std::string what;                                 // for messages
    std::map<std::uint64_t, std::string> blocks;      // block -> new contents
    std::vector<std::uint64_t> owner_items, refcount_items, path_items; // targeted
    bool node_damage = false;                         // a tree node changed: refusals name a block
};

struct rng_t {
    std::mt19937_64 g;
    std::uint64_t operator()() { return g(); }
    std::uint64_t below(std::uint64_t n) { return n ? g() % n : 0; }
    bool chance(unsigned pct) { return g() % 100 < pct; }
};

std::string block_of(const image_case& c, std::uint64_t b) { return c.clean.substr(b * c.bs, c.bs); }

// Items the node holds (its keys), so that queries go through it.
template <class Traits>
void node_items(const image_case& c, const node_info& ni, variant& v) {
    const node_layout<Traits> lay(c.bs);
    const auto* n = reinterpret_cast<const unsigned char*>(c.clean.data() + ni.block * c.bs);
    const bool leaf = ni.level == 0;
    const std::uint32_t cnt = node_layout<Traits>::count(n);
    for (std::uint32_t i = 0; i < cnt; i += 1 + cnt / 6) {
        const unsigned char* k = lay.key(n, leaf, i);
        const std::uint64_t first = load_le<std::uint64_t>(k);
        if (ni.tree == parent_tree) {
            v.path_items.push_back(first);
            continue;
        }
        auto& items = ni.tree == rmap_tree ? v.owner_items : v.refcount_items;
        items.push_back(first);
        if (leaf) { // and the block after the record
            const unsigned char* p = lay.payload(n, true, i);
            const std::uint64_t len = ni.tree == rmap_tree ? load_le<std::uint64_t>(p) : load_le<std::uint32_t>(p);
            if (first + len < c.nblocks) items.push_back(first + len);
        }
    }
}
void node_items(const image_case& c, const node_info& ni, variant& v) {
    if (ni.tree == rmap_tree) node_items<rmap_traits>(c, ni, v);
    else if (ni.tree == refcount_tree) node_items<refcount_traits>(c, ni, v);
    else node_items<parent_map_traits<>>(c, ni, v);
}

void flip_bytes(std::string& blk, std::uint64_t lo, std::uint64_t hi, unsigned n, rng_t& r) {
    for (unsigned k = 0; k < n; ++k) {
        const std::uint64_t at = lo + r.below(hi - lo);
        blk[at] = static_cast<char>(blk[at] ^ static_cast<char>(1 + r.below(255)));
    }
}

variant make_map_flip(const image_case& c, rng_t& r) {
    variant v;
    v.cls = map_flip;
    const unsigned pick = static_cast<unsigned>(r.below(100));
    std::uint64_t b;
    std::string kind;
    if (pick < 10) b = c.map_first, kind = "volume superblock";
    else if (pick < 18) b = c.bitmap_start + r.below(c.data_start - c.bitmap_start), kind = "volume bitmap";
    else if (pick < 95) {
        const node_info& ni = c.nodes[r.below(c.nodes.size())];
        b = ni.block;
        kind = std::string(tree_name[ni.tree]) + " node (level " + std::to_string(ni.level) + ")";
        node_items(c, ni, v);
        v.node_damage = true;
    } else b = c.data_start + r.below(c.map_first + c.map_blocks - c.data_start), kind = "map file block";
    std::string blk = block_of(c, b);
    const unsigned n = 1 + static_cast<unsigned>(r.below(6));
    // The volume superblock's checked part is its first 1 KiB; the bitmap's
    // bits for the map file's blocks are its first bytes.
    std::uint64_t hi = c.bs;
    if (kind == "volume superblock" && r.chance(80)) hi = 1024;
    if (kind == "volume bitmap" && b == c.bitmap_start && r.chance(70)) hi = (c.map_blocks + 7) / 8;
    flip_bytes(blk, 0, hi, n, r);
    v.what = std::to_string(n) + " bytes flipped in block " + std::to_string(b) + " (" + kind + ")";
    v.blocks[b] = blk;
    return v;
}

std::uint64_t node_at_level(const image_case& c, int tree, unsigned level, std::uint64_t not_this, rng_t& r) {
    std::vector<std::uint64_t> v;
    for (const auto& n : c.nodes)
        if (n.tree == tree && n.level == level && n.block != not_this) v.push_back(n.block);
    return v.empty() ? 0 : v[r.below(v.size())];
}

// What to change in a node. The last two are lies: a change no single node
// or descent can show.
enum mutation : unsigned {
    swap_keys, tree_id, level, count, self, sibling, record, separator, child, high_raised, // refused
    lie_record, lie_high_lowered,                                                         // lies
    mutation_count
};
// Which nodes a mutation applies to: 0 any, 1 leaves, 2 internal nodes,
// 3 internal nodes of the rmap (high keys).
constexpr int mutation_nodes[mutation_count] = {0, 0, 0, 0, 0, 1, 1, 2, 2, 3, 1, 3};
// How often, out of the total of each group.
constexpr unsigned mutation_weight[mutation_count] = {2, 2, 2, 2, 2, 2, 6, 4, 6, 2, 3, 1};

// One checksum-valid change to one node.
template <class Traits>
bool mutate_node(const image_case& c, const node_info& ni, variant& v, rng_t& r, mutation m) {
    const node_layout<Traits> lay(c.bs);
    std::string blk = block_of(c, ni.block);
    auto* n = reinterpret_cast<unsigned char*>(blk.data());
    const bool leaf = ni.level == 0;
    const std::uint32_t cnt = node_layout<Traits>::count(n);
    const std::uint32_t i = static_cast<std::uint32_t>(r.below(cnt));
    const std::uint32_t K = node_layout<Traits>::key_size;
    std::string what;
    auto set64 = [](unsigned char* p, std::uint64_t x) { store_le<std::uint64_t>(p, x); };
    auto add64 = [](unsigned char* p, std::int64_t d) { store_le<std::uint64_t>(p, load_le<std::uint64_t>(p) + static_cast<std::uint64_t>(d)); };
    const std::int64_t deltas[] = {1, -1, 2, -3, 7, 100, -100, 1 << 20};
    const std::int64_t delta = deltas[r.below(std::size(deltas))];
    if (m == lie_record || m == lie_high_lowered) {
        if (m == lie_high_lowered) {
            // A high key lowered (not below the entry's own key): overlap
            // queries skip part of the subtree. Only verify() sees it.
            unsigned char* h = lay.payload(n, false, i);
            const std::uint64_t lo = load_le<std::uint64_t>(lay.key(n, false, i));
            const std::uint64_t hi = load_le<std::uint64_t>(h);
            if (hi <= lo) return false;
            set64(h, lo + r.below(hi - lo));
            what = "high key of entry " + std::to_string(i) + " lowered";
        } else if (!leaf) {
            return false;
        } else if (ni.tree == rmap_tree) {
            unsigned char* k = lay.key(n, true, i);
            unsigned char* p = lay.payload(n, true, i);
            const std::uint64_t owner = load_le<std::uint64_t>(k + 8);
            const std::uint32_t flags = load_le<std::uint32_t>(p + 8);
            if (owner >= 1000000 || owner < 11) return false; // a special owner: an inode is a different kind of record
            const unsigned how = static_cast<unsigned>(r.below(3));
            if (how == 2) {
                // Another length that fits: a block more or less, or many more.
                const std::int64_t d = r.chance(40) ? -1 : r.chance(50) ? 1 : 1 + static_cast<std::int64_t>(r.below(2000));
                if (d < 0 && load_le<std::uint64_t>(p) < 2) return false;
                add64(p, d);
                what = "record " + std::to_string(i) + " length " + (d > 0 ? "+" : "") + std::to_string(d);
            } else if (how == 0) {
                // Another inode: keep the key order within the node.
                const std::uint64_t prev = i ? load_le<std::uint64_t>(lay.key(n, true, i - 1)) : 0;
                const std::uint64_t next = i + 1 < cnt ? load_le<std::uint64_t>(lay.key(n, true, i + 1)) : ~0ull;
                const std::uint64_t start = load_le<std::uint64_t>(k);
                if (prev == start || next == start) return false;
                set64(k + 8, owner + 1);
                what = "record " + std::to_string(i) + " owner " + std::to_string(owner) + " -> " + std::to_string(owner + 1);
            } else {
                if (flags) return false; // data only: offset 0 of an offset-less record must stay 0
                add64(k + 16, 1);
                what = "record " + std::to_string(i) + " offset + 1";
            }
        } else if (ni.tree == refcount_tree) {
            unsigned char* p = lay.payload(n, true, i);
            store_le<std::uint32_t>(p + 4, load_le<std::uint32_t>(p + 4) + 1);
            what = "record " + std::to_string(i) + " refcount + 1";
        } else {
            unsigned char* p = lay.payload(n, true, i);
            const std::uint32_t len = lay.payload_len(n, true, i);
            if (r.chance(50)) {
                store_le<std::uint32_t>(p, load_le<std::uint32_t>(p) ^ 0x10000u);
                what = "record " + std::to_string(i) + " parent generation changed";
            } else {
                // Another name, its hash recomputed (the key order may break:
                // then it is also refused).
                unsigned char& ch = p[4 + r.below(len - 4)];
                ch = ch == 'a' ? 'b' : 'a';
                store_le<std::uint32_t>(lay.key(n, true, i) + 16, ~crc32c_raw(~0u, p + 4, len - 4));
                what = "record " + std::to_string(i) + " name changed, hash recomputed";
            }
        }
    } else {
        auto* h = header_of(n);
        const unsigned kind = m == record || m == separator ? 6u : m == child ? 8u : m == high_raised ? 9u : static_cast<unsigned>(m);
        if (kind == 0) {
            if (cnt < 2) return false;
            const std::uint32_t j = std::min(i, cnt - 2);
            std::string tmp(reinterpret_cast<char*>(lay.key(n, leaf, j)), K);
            std::memcpy(lay.key(n, leaf, j), lay.key(n, leaf, j + 1), K);
            std::memcpy(lay.key(n, leaf, j + 1), tmp.data(), K);
            what = "keys " + std::to_string(j) + " and " + std::to_string(j + 1) + " swapped";
        } else if (kind == 1) {
            h->tree_id.set(r.chance(70) ? 1 + (h->tree_id.get() % 3) : static_cast<std::uint32_t>(r()));
            what = "tree id -> " + std::to_string(h->tree_id.get());
        } else if (kind == 2) {
            h->level.set(static_cast<std::uint16_t>(r.chance(50) || ni.level == 0 ? ni.level + 1 : ni.level - 1));
            what = "level -> " + std::to_string(h->level.get());
        } else if (kind == 3) {
            const std::uint32_t counts[] = {0, cnt + 1, cnt - 1, lay.max_entries(leaf) + 1, 0xFFFFFFFFu};
            const std::uint32_t nc = counts[r.below(5)];
            if (nc == cnt) return false;
            h->count.set(nc);
            what = "count " + std::to_string(cnt) + " -> " + std::to_string(nc);
        } else if (kind == 4) {
            const std::uint64_t other = node_at_level(c, ni.tree, ni.level, ni.block, r);
            h->self.set(r.chance(50) && other ? other : ni.block + 1);
            what = "self -> " + std::to_string(h->self.get());
        } else if (kind == 5) {
            // Sibling links (leaves), or links where none may be.
            const std::uint64_t other = node_at_level(c, ni.tree, 0, ni.block, r);
            const std::uint64_t choices[] = {other, ni.block, 0, c.map_first, c.nblocks + 9, other + 1};
            const std::uint64_t x = choices[r.below(6)];
            if (r.chance(50)) {
                if (h->left.get() == x) return false;
                h->left.set(x);
            } else {
                if (h->right.get() == x) return false;
                h->right.set(x);
            }
            what = "sibling link -> " + std::to_string(x);
        } else if (kind == 6 || kind == 7) {
            // Record or key fields out of range (leaves), a separator moved
            // (internal nodes).
            unsigned char* k = lay.key(n, leaf, i);
            if (!leaf) {
                const unsigned how = static_cast<unsigned>(r.below(3));
                if (how == 0) add64(k, delta), what = "separator " + std::to_string(i) + " start " + (delta > 0 ? "+" : "") + std::to_string(delta);
                else if (how == 1 && cnt > 1) std::memcpy(k, lay.key(n, false, i ? i - 1 : 1), K), what = "separator " + std::to_string(i) + " = a neighbour's";
                else set64(k + (K > 8 ? 8 : 0), r()), what = "separator " + std::to_string(i) + " field randomised";
            } else if (ni.tree == rmap_tree) {
                unsigned char* p = lay.payload(n, true, i);
                // (A length changed to another that fits is a lie: below.)
                switch (r.below(6)) {
                case 0: set64(p, r.chance(50) ? 0 : ~0ull), what = "record " + std::to_string(i) + " length -> " + std::to_string(load_le<std::uint64_t>(p)); break;
                case 1: set64(p, 0 - load_le<std::uint64_t>(k) + 1 + r.below(1000)), what = "record " + std::to_string(i) + " length past block 2^64-1"; break;
                case 2: set64(k + 8, r.chance(50) ? 0 : ~0ull - 100 - r.below(100)), what = "record " + std::to_string(i) + " owner -> " + std::to_string(load_le<std::uint64_t>(k + 8)); break;
                case 3: set64(k + 8, ~0ull), what = "record " + std::to_string(i) + " owner -> 2^64-1"; break;
                case 4: store_le<std::uint32_t>(p + 8, load_le<std::uint32_t>(p + 8) | (r.chance(50) ? 0x10u : 0x5u)), what = "record " + std::to_string(i) + " flags -> " + std::to_string(load_le<std::uint32_t>(p + 8)); break;
                default: // past 2^64-1 with its length (or not 0 where it must be)
                    set64(k + 16, ~0ull - r.below(3));
                    if (load_le<std::uint64_t>(p) < 4) set64(p, 4);
                    what = "record " + std::to_string(i) + " offset -> ~0";
                    break;
                }
            } else if (ni.tree == refcount_tree) {
                unsigned char* p = lay.payload(n, true, i);
                switch (r.below(4)) {
                case 0: store_le<std::uint32_t>(p, 0), what = "record " + std::to_string(i) + " length 0"; break;
                case 1: store_le<std::uint32_t>(p, r.chance(50) ? 0xFFFFFFFFu : load_le<std::uint32_t>(p) + 1 + static_cast<std::uint32_t>(r.below(4))), what = "record " + std::to_string(i) + " length -> " + std::to_string(load_le<std::uint32_t>(p)); break;
                case 2: store_le<std::uint32_t>(p + 4, static_cast<std::uint32_t>(r.below(2))), what = "record " + std::to_string(i) + " refcount -> " + std::to_string(load_le<std::uint32_t>(p + 4)); break;
                default: set64(k, ~0ull - r.below(2)), what = "record " + std::to_string(i) + " start -> ~0"; break;
                }
            } else {
                unsigned char* p = lay.payload(n, true, i);
                const std::uint32_t len = lay.payload_len(n, true, i);
                switch (r.below(5)) {
                case 0: p[4 + r.below(len - 4)] = r.chance(50) ? '/' : 0, what = "record " + std::to_string(i) + " name holds / or NUL"; break;
                case 4: {
                    unsigned char& ch = p[4 + r.below(len - 4)];
                    ch = ch == 'a' ? 'b' : 'a';
                    what = "record " + std::to_string(i) + " name changed, its hash not";
                    break;
                }
                case 1: store_le<std::uint16_t>(p - K - 2, static_cast<std::uint16_t>(r.below(5))), what = "record " + std::to_string(i) + " value length < 5"; break;
                case 2: store_le<std::uint16_t>(p - K - 2, static_cast<std::uint16_t>(len + 1 + r.below(300))), what = "record " + std::to_string(i) + " value length grown"; break;
                default: store_le<std::uint16_t>(n + node_header_size + 2 * i, static_cast<std::uint16_t>(r.below(c.bs + 10))), what = "slot " + std::to_string(i) + " moved"; break;
                }
            }
        } else if (kind == 8) {
            // A child pointer redirected.
            unsigned char* p = lay.payload(n, false, i) + node_layout<Traits>::child_offset;
            const std::uint64_t cur = load_le<std::uint64_t>(p);
            const int other_tree = (ni.tree + 1 + static_cast<int>(r.below(2))) % 3;
            std::vector<std::uint64_t> choices = {node_at_level(c, ni.tree, ni.level - 1, cur, r),
                                                  node_at_level(c, other_tree, 0, 0, r),
                                                  ni.block,
                                                  c.map_first,
                                                  c.data_start > c.bitmap_start ? c.bitmap_start : c.map_first,
                                                  0,
                                                  1 + r.below(c.map_first - 1),
                                                  c.nblocks + r.below(10),
                                                  ~0ull - r.below(2),
                                                  1ull << 40};
            if (ni.level >= 2) choices.push_back(node_at_level(c, ni.tree, 0, 0, r));
            // A free block of the map file, when there is one.
            std::uint64_t free_blk = 0;
            for (std::uint64_t b = c.data_start; b < c.map_first + c.map_blocks; ++b)
                if (!c.node_blocks.count(b)) free_blk = b;
            if (free_blk) choices.push_back(free_blk);
            const std::uint64_t x = choices[r.below(choices.size())];
            if (x == cur) return false;
            set64(p, x);
            what = "child " + std::to_string(i) + " " + std::to_string(cur) + " -> " + std::to_string(x);
        } else if (kind == 9) {
            // A high key raised above its subtree's: a query entering the
            // child finds the child's own high key lower.
            if constexpr (node_layout<Traits>::interval) {
                add64(lay.payload(n, false, i), 1 + static_cast<std::int64_t>(r.below(r.chance(50) ? 4 : 100000)));
                what = "high key of entry " + std::to_string(i) + " raised";
            } else return false;
        }
    }
    seal_node(n, c.bs, c.seed);
    // Queries around the changed entry, before and after the change.
    {
        const auto* old = reinterpret_cast<const unsigned char*>(c.clean.data() + ni.block * c.bs);
        auto& items = ni.tree == rmap_tree ? v.owner_items : ni.tree == refcount_tree ? v.refcount_items : v.path_items;
        // (Not the new key of a slotted leaf: its slot may point anywhere now.)
        const bool slotted = leaf && node_layout<Traits>::slotted_leaves;
        const std::uint64_t first_old = load_le<std::uint64_t>(lay.key(old, leaf, i));
        for (const std::uint64_t first : {first_old, slotted ? first_old : load_le<std::uint64_t>(lay.key(n, leaf, i))}) {
            if (ni.tree == parent_tree) {
                if (first <= c.ninodes) items.push_back(first);
                continue;
            }
            for (const std::uint64_t d : {0, 1, 2, 3, 5, 9})
                if (first + d < c.nblocks) items.push_back(first + d);
            if (first && first < c.nblocks) items.push_back(first - 1);
        }
    }
    v.what = std::string(tree_name[ni.tree]) + " node " + std::to_string(ni.block) + " (level " + std::to_string(ni.level) + "): " + what;
    v.blocks[ni.block] = blk;
    node_items(c, ni, v);
    return true;
}

variant make_map_node(const image_case& c, rng_t& r, bool lie) {
    for (;;) {
        // A mutation by weight, then a node it applies to.
        const unsigned lo = lie ? unsigned{lie_record} : 0u, hi = lie ? unsigned{mutation_count} : unsigned{lie_record};
        unsigned total = 0;
        for (unsigned k = lo; k < hi; ++k) total += mutation_weight[k];
        unsigned x = static_cast<unsigned>(r.below(total)), m = lo;
        while (x >= mutation_weight[m]) x -= mutation_weight[m++];
        std::vector<const node_info*> fit;
        for (const auto& n : c.nodes) {
            const int want = mutation_nodes[m];
            if (want == 0 || (want == 1 && n.level == 0) || (want == 2 && n.level > 0) || (want == 3 && n.level > 0 && n.tree == rmap_tree))
                fit.push_back(&n);
        }
        if (fit.empty()) continue;
        const node_info& ni = *fit[r.below(fit.size())];
        variant v;
        v.cls = lie ? map_lie : map_node;
        v.node_damage = !lie;
        bool made = false;
        if (ni.tree == rmap_tree) made = mutate_node<rmap_traits>(c, ni, v, r, static_cast<mutation>(m));
        else if (ni.tree == refcount_tree) made = mutate_node<refcount_traits>(c, ni, v, r, static_cast<mutation>(m));
        else made = mutate_node<parent_map_traits<>>(c, ni, v, r, static_cast<mutation>(m));
        if (made) return v;
    }
}

variant make_fs_flip(const image_case& c, rng_t& r) {
    variant v;
    v.cls = fs_flip;
    const unsigned pick = static_cast<unsigned>(r.below(100));
    const auto& where = pick < 15 ? c.sb : pick < 30 ? c.gdt : pick < 65 ? c.itable : pick < 90 ? c.dirs : c.extents;
    const char* kind = pick < 15 ? "superblock" : pick < 30 ? "group descriptors" : pick < 65 ? "inode table" : pick < 90 ? "directory block" : "extent block";
    const auto& [off, len] = where[r.below(where.size())];
    const unsigned n = 1 + static_cast<unsigned>(r.below(4));
    std::map<std::uint64_t, std::string>& blocks = v.blocks;
    for (unsigned k = 0; k < n; ++k) {
        const std::uint64_t at = off + r.below(len);
        const std::uint64_t b = at / c.bs;
        if (!blocks.count(b)) blocks[b] = block_of(c, b);
        std::string& blk = blocks[b];
        blk[at % c.bs] = static_cast<char>(blk[at % c.bs] ^ static_cast<char>(1 + r.below(255)));
    }
    v.what = std::to_string(n) + " bytes flipped in the " + kind + " (block " + std::to_string(blocks.begin()->first) + ")";
    return v;
}

// ---- running a variant ---------------------------------------------------------------

struct tally {
    std::uint64_t variants = 0, answered = 0, refused = 0, by_status[5] = {}, variants_refused = 0;
};

struct campaign {
    std::uint64_t failures = 0;
    std::vector<std::string> reports; // the first failures, in full
    tally per[class_count];
    std::set<std::string> messages[class_count]; // a few distinct refusal messages
    void fail(const std::string& s) {
        ++failures;
        if (reports.size() < 25) reports.push_back(s);
    }
};

void write_blocks(const image_case& c, const std::map<std::uint64_t, std::string>& blocks) {
    const int fd = open(c.img.c_str(), O_WRONLY);
    REQUIRE(fd >= 0);
    for (const auto& [b, data] : blocks)
        REQUIRE(pwrite(fd, data.data(), data.size(), static_cast<off_t>(b * c.bs)) == static_cast<ssize_t>(data.size()));
    close(fd);
}

// The answer the reference gives to `items` (text, json prefix, status).
struct expected {
    std::string text, json_prefix;
    int status = 0;
};
expected expect(const reference& ref, const char* header, const char* member, const std::vector<std::uint64_t>& items) {
    expected e;
    e.text = header;
    e.json_prefix = std::string("{\"") + member + "\":[";
    for (std::size_t k = 0; k < items.size(); ++k) {
        const auto t = ref.text.find(items[k]);
        if (t != ref.text.end()) e.text += t->second;
        const auto j = ref.json.find(items[k]);
        e.json_prefix += (k ? "," : "") + (j != ref.json.end() ? j->second : "<no reference>");
        if (ref.missing.count(items[k])) e.status = 1;
    }
    e.json_prefix += "]";
    return e;
}

// Does the message name a block of the map file (where the nodes are)?
bool names_map_block(const image_case& c, const std::string& err) {
    for (std::size_t at = err.find("block "); at != std::string::npos; at = err.find("block ", at + 1)) {
        const char* digits = err.c_str() + at + 6;
        if (!std::isdigit(static_cast<unsigned char>(*digits))) continue;
        const std::uint64_t b = std::strtoull(digits, nullptr, 10);
        if (b >= c.map_first && b < c.map_first + c.map_blocks) return true;
    }
    return false;
}

void run_variant(const image_case& c, const variant& v, rng_t& r, campaign& cp) {
    write_blocks(c, v.blocks);
    std::string damaged = c.clean;
    for (const auto& [b, data] : v.blocks) damaged.replace(b * c.bs, c.bs, data);

    // Samples: what the damaged node holds, and some at random.
    std::vector<std::uint64_t> owners = v.owner_items, refs = v.refcount_items, inos = v.path_items;
    for (int k = 0; k < 8; ++k) owners.push_back(r.below(c.nblocks));
    for (int k = 0; k < 3; ++k) owners.push_back(*std::next(c.node_blocks.begin(), static_cast<long>(r.below(c.node_blocks.size()))));
    for (int k = 0; k < 5; ++k) refs.push_back(r.below(c.nblocks));
    for (int k = 0; k < 5; ++k) refs.push_back(c.shared[r.below(c.shared.size())] + (r.chance(20) ? 1 : 0));
    for (int k = 0; k < 6; ++k) inos.push_back(c.used_inodes[r.below(c.used_inodes.size())]);
    inos.push_back(1 + r.below(c.ninodes));
    const std::string q = " '" + c.img.string() + "'";
    struct cmd {
        std::string args;
        bool json;
        std::string text;          // expected answer
        std::string json_prefix;
        int status;
        bool query;
    };
    std::vector<cmd> cmds;
    const std::pair<const char*, std::pair<const reference*, std::vector<std::uint64_t>*>> queries[] = {
        {"owner", {&c.owner, &owners}}, {"paths", {&c.paths, &inos}}, {"refcount", {&c.refcount, &refs}}};
    for (const auto& [name, rr] : queries) {
        const std::string n = name;
        const expected e = expect(*rr.first, n == "owner" ? "Block\tInode number\n" : n == "paths" ? "Inode\tPathname\n" : "Block\tRefcount\n",
                                  n == "owner" ? "owners" : n == "paths" ? "paths" : "refcounts", *rr.second);
        cmds.push_back({n + q + join(*rr.second), false, e.text, "", e.status, true});
        cmds.push_back({n + " --json" + q + join(*rr.second), true, "", e.json_prefix, e.status, true});
    }
    cmds.push_back({"check" + q, false, c.check_text, "", 0, false});
    cmds.push_back({"check --json" + q, true, c.check_json, "", 0, false});

    const bool verbose = env_u64("JBTREE_DAMAGE_VERBOSE", 0) != 0;
    if (verbose) std::printf("[%s] %s: %s\n", c.name.c_str(), class_name[v.cls], v.what.c_str());
    tally& t = cp.per[v.cls];
    ++t.variants;
    bool any_refused = false;
    static const std::string not_found = ",\"error\":\"not_found\",";
    for (const cmd& k : cmds) {
        const result res = run_tool(k.args, c.dir);
        std::string ctx = "[" + c.name + "] " + class_name[v.cls] + ": " + v.what + "\n  $ jbtree-e2fs " + k.args.substr(0, 200) +
                          "\n  status " + std::to_string(res.status) + "\n  stdout: " + res.out.substr(0, 600) + "\n  stderr: " + res.err.substr(0, 600);
        // Never a crash, a sanitizer report, a hang or an undocumented status.
        if (res.status != 0 && res.status != 1 && res.status != 3 && res.status != 4) {
            cp.fail("undocumented exit status (crash, sanitizer, timeout or usage)\n" + ctx);
            continue;
        }
        if (res.err.find("ERROR: AddressSanitizer") != std::string::npos || res.err.find("runtime error:") != std::string::npos) {
            cp.fail("sanitizer report\n" + ctx);
            continue;
        }
        if (res.status != 0 && res.err.find("jbtree-e2fs: ") == std::string::npos) {
            cp.fail("non-zero exit without a message on stderr\n" + ctx);
            continue;
        }
        if (k.json) {
            const json_check o = parse_json(res.out);
            if (!o.ok) {
                cp.fail("--json output is not one JSON object\n" + ctx);
                continue;
            }
            if (res.status != 0) {
                auto m = o.members;
                if (!m.count("error") || !m.count("status") || !m.count("message") || m["status"] != std::to_string(res.status) ||
                    res.err.find("jbtree-e2fs: " + m["message"] + "\n") == std::string::npos) {
                    cp.fail("--json error object does not agree with the exit status and stderr\n" + ctx);
                    continue;
                }
                // The image file reads fine: whatever libext2fs or jbtree
                // finds wrong is damage, not an I/O error, and never a bug.
                if (m["error"] == "io" || m["error"] == "internal") {
                    cp.fail("damage reported as error code " + m["error"] + "\n" + ctx);
                    continue;
                }
            } else if (o.members.count("error")) {
                cp.fail("--json error member on success\n" + ctx);
                continue;
            }
        }
        // Answered exactly as the reference?
        const bool same = res.status == k.status &&
                          (!k.json ? res.out == k.text
                                   : k.query ? res.out.rfind(k.json_prefix, 0) == 0 &&
                                                   (k.status == 0 ? res.out == k.json_prefix + "}\n"
                                                                  : res.out.compare(k.json_prefix.size(), not_found.size(), not_found) == 0)
                                             : res.out == k.text);
        const bool refused = res.status == 3 || res.status == 4;
        if (v.cls == map_flip || v.cls == map_node) {
            if (!same && !refused) {
                cp.fail("map damage answered differently from the reference (a wrong answer)\n" + ctx + "\n  expected status " +
                        std::to_string(k.status) + ": " + (k.json ? k.json_prefix : k.text).substr(0, 600));
                continue;
            }
            if (refused && v.node_damage && !names_map_block(c, res.err)) {
                cp.fail("map node damage refused without naming a block\n" + ctx);
                continue;
            }
        }
        if (v.cls == map_lie && !k.query && res.status != 4) {
            cp.fail("check does not refuse maps that disagree with the filesystem\n" + ctx);
            continue;
        }
        if (refused) {
            ++t.refused;
            any_refused = true;
            if (cp.messages[v.cls].size() < 12) {
                std::string line = res.err.substr(0, res.err.find('\n'));
                if (const auto at = line.find(": ", 13); at != std::string::npos) line = line.substr(at + 2);
                cp.messages[v.cls].insert(line.substr(0, 200));
            }
        } else ++t.answered;
        ++t.by_status[res.status];
        if (verbose)
            std::printf("  %-8s %s %d %s\n", k.args.substr(0, k.args.find(' ')).c_str(), k.json ? "json" : "text", res.status,
                        refused ? res.err.substr(0, res.err.find('\n')).c_str() : same ? "(as the reference)" : "(answered otherwise)");
    }
    if (any_refused) ++t.variants_refused;
    // Read-only: the image is byte for byte what the variant made it.
    if (read_all(c.img) != damaged) cp.fail("[" + c.name + "] " + class_name[v.cls] + ": " + v.what + ": a read-only command changed the image");
    std::map<std::uint64_t, std::string> restore;
    for (const auto& [b, data] : v.blocks) restore[b] = block_of(c, b);
    write_blocks(c, restore);
}

} // namespace

TEST_CASE("damage campaign: damaged stored maps and filesystem metadata are answered right or refused with a message") {
    if (run("mkfs.ext4 -V >/dev/null 2>&1") != 0 || run("debugfs -V >/dev/null 2>&1") != 0 || run("timeout --version >/dev/null 2>&1") != 0) {
        MESSAGE("SKIP: mkfs.ext4, debugfs or timeout not installed");
        return;
    }
    const std::uint64_t total = env_u64("JBTREE_DAMAGE_VARIANTS", 300);
    const std::uint64_t seed = env_u64("JBTREE_DAMAGE_SEED", 17);
    char t[] = "/tmp/jbtree-damage-XXXXXX";
    REQUIRE(mkdtemp(t) != nullptr);
    const fs::path tmp = t;
    const auto t0 = std::chrono::steady_clock::now();
    std::mt19937_64 gen(seed);
    image_case cases[2];
    cases[0].name = "4k-csum";
    cases[1].name = "1k-nocsum";
    for (auto& c : cases) c.dir = tmp;
    REQUIRE(make_case(cases[0], "-b 4096 -O metadata_csum", 300, gen));
    REQUIRE(make_case(cases[1], "-b 1024 -O ^metadata_csum", 150, gen));
    for (const auto& c : cases) {
        std::size_t per_tree[3] = {};
        for (const auto& n : c.nodes) ++per_tree[n.tree];
        MESSAGE(c.name << ": maps in blocks " << c.map_first << "-" << c.map_first + c.map_blocks - 1 << "; rmap " << per_tree[0]
                       << " nodes (height " << c.tree_height[0] << "), refcount " << per_tree[1] << " (height " << c.tree_height[1]
                       << "), parent pointers " << per_tree[2] << " (height " << c.tree_height[2] << "); " << c.owner.json.size()
                       << " blocks, " << c.used_inodes.size() << " inodes in use");
        CHECK(c.tree_height[0] >= 2);
        CHECK(c.tree_height[1] >= 1);
        CHECK(c.tree_height[2] >= 2);
    }
    const double setup = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

    campaign cp;
    rng_t r{std::mt19937_64(seed * 0x9E3779B97F4A7C15ull + 1)};
    for (std::uint64_t k = 0; k < total; ++k) {
        const image_case& c = cases[k % 2];
        // map-flip 30%, map-node 40%, map-lie 10%, fs-flip 20%.
        const unsigned p = static_cast<unsigned>((k / 2 * 37) % 10);
        const variant v = p < 3 ? make_map_flip(c, r) : p < 7 ? make_map_node(c, r, false) : p < 8 ? make_map_node(c, r, true) : make_fs_flip(c, r);
        run_variant(c, v, r, cp);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (int k = 0; k < class_count; ++k) {
        const tally& x = cp.per[k];
        MESSAGE(std::string(class_name[k]) << ": " << x.variants << " variants (" << x.variants_refused << " refused by some command); "
                              << x.answered + x.refused << " commands: " << x.answered << " answered, " << x.refused
                              << " refused with a message (exit 0/1/3/4: " << x.by_status[0] << "/" << x.by_status[1] << "/"
                              << x.by_status[3] << "/" << x.by_status[4] << ")");
        for (const auto& m : cp.messages[k]) MESSAGE("  e.g. " << m);
    }
    MESSAGE(total << " variants (seed " << seed << ") in " << secs << " s (" << setup << " s to make the images and references)");
    for (const auto& rep : cp.reports) MESSAGE(rep);
    CHECK(cp.failures == 0);
    fs::remove_all(tmp);
}
