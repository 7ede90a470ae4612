// Catch2's main. Nothing here may touch CUDA: test discovery runs this binary at build time on
// machines without a GPU.
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
