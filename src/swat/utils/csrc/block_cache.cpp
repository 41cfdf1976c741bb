// A cache of large CPU blocks in front of PyTorch's CPU allocator (swat/utils/block_cache.py says
// why and when). A block of at least `min_bytes` is rounded up to whole 2 MiB pages; when its tensor
// dies it waits in the cache, and a later request of the same rounded size takes it back instead
// of asking the allocator underneath (glibc hands every block over 32 MiB back to the kernel, which
// zeroes fresh pages for the next one). A request that finds no block of its size first frees
// cached blocks, oldest first, until as many bytes as it asks for are freed or the cache is empty:
// so the bytes held, in use plus cached, only ever grow when the cache is empty, and never beyond
// the most the process had in use at once without the cache.
#include <c10/core/Allocator.h>
#include <c10/core/CPUAllocator.h>
#include <torch/library.h>

#include <cstdint>
#include <list>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace {

constexpr size_t kPage = size_t(2) << 20;  // one huge page: sizes are rounded up to whole pages

struct Block {
  c10::DataPtr memory;  // as the allocator underneath returned it; freeing it returns the memory
  size_t bytes;         // rounded size
};

class BlockCache final : public c10::Allocator {
 public:
  c10::DataPtr allocate(size_t n) override {
    if (n < min_bytes_) return below_->allocate(n);
    const size_t bytes = (n + kPage - 1) / kPage * kPage;
    Block* block = take(bytes);
    if (block == nullptr) block = fresh(bytes);
    void* data = block->memory.get();
    {
      std::lock_guard<std::mutex> guard(mutex_);
      in_use_.emplace(data, block);
    }
    return {data, data, &give_back, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &give_back; }

  void copy_data(void* dest, const void* src, size_t count) const override { default_copy_data(dest, src, count); }

  // Installs the cache as PyTorch's CPU allocator, over whatever allocator is installed now.
  void install(size_t min_bytes) {
    std::lock_guard<std::mutex> guard(mutex_);
    if (!installed_) below_ = c10::GetCPUAllocator();
    min_bytes_ = min_bytes;
    installed_ = true;
    c10::SetCPUAllocator(this, /*priority=*/0);
  }

  // Gives PyTorch its allocator back and frees every cached block; blocks in use come back here
  // when their tensors die and are freed then.
  void uninstall() {
    {
      std::lock_guard<std::mutex> guard(mutex_);
      if (!installed_) return;
      installed_ = false;
      c10::SetCPUAllocator(below_, /*priority=*/0);
    }
    empty();
  }

  void empty() {
    std::list<Block*> released;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      released.swap(cached_);
      cached_bytes_ = 0;
    }
    for (Block* block : released) delete block;
  }

  // hits, misses, cached bytes, cached blocks, installed
  std::vector<int64_t> stats() {
    std::lock_guard<std::mutex> guard(mutex_);
    return {hits_, misses_, int64_t(cached_bytes_), int64_t(cached_.size()), int64_t(installed_)};
  }

  static BlockCache& instance() {
    static BlockCache* cache = new BlockCache();  // never destroyed: tensors may die after static destructors
    return *cache;
  }

 private:
  // The most recently freed block of exactly `bytes`, or nullptr after freeing cached blocks
  // (oldest first) until `bytes` are freed or none is left.
  Block* take(size_t bytes) {
    std::list<Block*> released;
    Block* found = nullptr;
    {
      std::lock_guard<std::mutex> guard(mutex_);
      for (auto it = cached_.rbegin(); it != cached_.rend(); ++it) {
        if ((*it)->bytes == bytes) {
          found = *it;
          cached_.erase(std::next(it).base());
          cached_bytes_ -= bytes;
          ++hits_;
          return found;
        }
      }
      ++misses_;
      size_t freed = 0;
      while (!cached_.empty() && freed < bytes) {
        freed += cached_.front()->bytes;
        cached_bytes_ -= cached_.front()->bytes;
        released.push_back(cached_.front());
        cached_.pop_front();
      }
    }
    for (Block* block : released) delete block;  // outside the lock: freeing may take a while
    return nullptr;
  }

  Block* fresh(size_t bytes) {
    try {
      return new Block{below_->allocate(bytes), bytes};
    } catch (const c10::Error&) {
      empty();  // out of memory with blocks still cached: free them all and try once more
      return new Block{below_->allocate(bytes), bytes};
    }
  }

  static void give_back(void* data) { instance().put(data); }

  void put(void* data) {
    std::unique_lock<std::mutex> guard(mutex_);
    auto it = in_use_.find(data);
    if (it == in_use_.end()) {  // a small block, or one allocated before the cache was installed
      guard.unlock();
      below_->raw_deleter()(data);
      return;
    }
    Block* block = it->second;
    in_use_.erase(it);
    if (!installed_) {
      guard.unlock();
      delete block;
      return;
    }
    cached_.push_back(block);
    cached_bytes_ += block->bytes;
  }

  std::mutex mutex_;
  c10::Allocator* below_ = nullptr;
  size_t min_bytes_ = 0;
  bool installed_ = false;
  std::unordered_map<void*, Block*> in_use_;
  std::list<Block*> cached_;  // oldest first
  size_t cached_bytes_ = 0;
  int64_t hits_ = 0;
  int64_t misses_ = 0;
};

void install(int64_t min_bytes) { BlockCache::instance().install(size_t(min_bytes)); }
void uninstall() { BlockCache::instance().uninstall(); }
void empty() { BlockCache::instance().empty(); }
std::vector<int64_t> stats() { return BlockCache::instance().stats(); }

}  // namespace

TORCH_LIBRARY(swat_block_cache, m) {
  m.def("install(int min_bytes) -> ()", &install);
  m.def("uninstall() -> ()", &uninstall);
  m.def("empty() -> ()", &empty);
  m.def("stats() -> int[]", &stats);
}
