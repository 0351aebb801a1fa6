// Writes a small MJPEG AVI for the try_from_video test: argv[2] frames of 32x16 BGR,
// each a flat grey whose level rises with the frame number. Exit 0 when written.
#include <opencv2/core.hpp>
#include <opencv2/videoio.hpp>

#include <cstdio>
#include <cstdlib>

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: try_make_video OUT.avi FRAMES\n");
    return 2;
  }
  const int frames = std::atoi(argv[2]);
  cv::VideoWriter out(argv[1], cv::CAP_OPENCV_MJPEG, cv::VideoWriter::fourcc('M', 'J', 'P', 'G'), 10.0,
                      cv::Size(32, 16));
  if (!out.isOpened()) {
    std::fprintf(stderr, "try_make_video: cannot open %s for writing\n", argv[1]);
    return 1;
  }
  for (int i = 0; i < frames; ++i) out.write(cv::Mat(16, 32, CV_8UC3, cv::Scalar::all(40.0 + 20.0 * i)));
  out.release();
  std::printf("wrote %d frames to %s\n", frames, argv[1]);
  return 0;
}
