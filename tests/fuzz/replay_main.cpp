// Runs a fuzz entry point without libFuzzer: every file of the corpus directory given as
// argv[1], then 20000 deterministic pseudo-random inputs built from the corpus.
#include <dirent.h>

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "base/random.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

int main(int argc, char** argv) {
  std::vector<std::string> corpus;
  if (argc > 1) {
    if (DIR* d = opendir(argv[1])) {
      while (auto* e = readdir(d)) {
        if (e->d_name[0] == '.') continue;
        std::ifstream f(std::string(argv[1]) + "/" + e->d_name, std::ios::binary);
        std::stringstream ss;
        ss << f.rdbuf();
        corpus.push_back(ss.str());
      }
      closedir(d);
    }
  }
  if (corpus.empty()) corpus.push_back("\x01*1\r\n$4\r\nPING\r\n");
  for (auto& c : corpus) LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(c.data()), c.size());
  keel::SeededRandom rng(12345);
  for (int i = 0; i < 20000; ++i) {
    std::string in = corpus[rng.uniform(corpus.size())];
    int edits = static_cast<int>(rng.uniform(8)) + 1;
    for (int e = 0; e < edits; ++e) {
      size_t at = in.empty() ? 0 : rng.uniform(in.size() + 1);
      switch (rng.uniform(4)) {
        case 0: in.insert(at, 1, static_cast<char>(rng.uniform(256))); break;
        case 1: if (at < in.size()) in.erase(at, 1); break;
        case 2: if (at < in.size()) in[at] = static_cast<char>(rng.uniform(256)); break;
        case 3: in.insert(at, corpus[rng.uniform(corpus.size())]); break;
      }
    }
    if (in.size() > 1 << 16) in.resize(1 << 16);
    LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(in.data()), in.size());
  }
  std::printf("replayed %zu corpus files and 20000 mutations\n", corpus.size());
  return 0;
}
