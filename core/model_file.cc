// Work in progress: implemented in the engine issue.
#include "core/model_file.h"
