// Stand-in for the TFLM Arduino library's umbrella header.
#pragma once
