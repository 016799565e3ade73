// placeholder: the real fuzz target replaces this file.
#include <jbtree/jbtree.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    (void)data;
    (void)size;
    return 0;
}
