// Work in progress: implemented in the engine issue.
#include "core/network.h"
