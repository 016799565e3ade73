// SPDX-License-Identifier: MIT
// jbtree: umbrella header for the freestanding core.
#pragma once

#include "jbtree/base/crc32c.hpp"
#include "jbtree/base/endian.hpp"
#include "jbtree/base/errc.hpp"
#include "jbtree/base/in_place.hpp"
#include "jbtree/engine/btree.hpp"
#include "jbtree/journal/jbd2_journal.hpp"
#include "jbtree/journal/jbd2_mkjournal.hpp"
#include "jbtree/journal/jbd2_recovery.hpp"
#include "jbtree/journal/null_journal.hpp"
#include "jbtree/maps/parent_map.hpp"
#include "jbtree/maps/refcount_map.hpp"
#include "jbtree/maps/rmap.hpp"
#include "jbtree/records/basic.hpp"
#include "jbtree/storage/memory_device.hpp"
#include "jbtree/storage/memory_storage.hpp"
#include "jbtree/volume/volume.hpp"
