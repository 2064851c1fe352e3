// pybind11 module ntengine._C: thin glue over the framework-free C++ in csrc/.
//
// Validate, borrow buffers, release the GIL, call. No logic lives here: the
// padding / truncation policy and error messages are in ntengine/tokenizer.py.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <vector>

#include "common/check.h"
#include "tokenizer/kmer.h"

namespace py = pybind11;

namespace ntengine {
void bind_cpu_kernels(py::module_& m);  // bindings_kernels.cpp
}
using ntengine::kmer::Mode;
using ntengine::kmer::Options;
using ntengine::kmer::Seq;
using ntengine::kmer::Status;
using ntengine::kmer::StatusCode;

namespace {

// Points at the bytes of each item (ASCII str or bytes) without copying. The items
// are also kept in `keep` so they outlive the GIL-free section even if the caller's
// list is mutated from another thread meanwhile.
std::vector<Seq> borrow_seqs(const py::list& seqs, std::vector<py::object>& keep) {
  std::vector<Seq> out;
  out.reserve(seqs.size());
  keep.reserve(seqs.size());
  for (const py::handle item : seqs) {
    PyObject* o = item.ptr();
    if (PyUnicode_Check(o)) {
#if PY_VERSION_HEX < 0x030C0000
      if (PyUnicode_READY(o) < 0) throw py::error_already_set();
#endif
      // Why ASCII only: then bytes == code points, so offsets are string positions.
      if (!PyUnicode_IS_ASCII(o)) throw py::type_error("_C: str sequences must be ASCII");
      out.push_back({PyUnicode_1BYTE_DATA(o), PyUnicode_GET_LENGTH(o)});
    } else if (PyBytes_Check(o)) {
      out.push_back({reinterpret_cast<const uint8_t*>(PyBytes_AS_STRING(o)), PyBytes_GET_SIZE(o)});
    } else {
      throw py::type_error("_C: sequences must be str or bytes");
    }
    keep.push_back(py::reinterpret_borrow<py::object>(item));
  }
  return out;
}

py::tuple count_tokens(const py::list& seqs, const Options& opts, int num_threads) {
  NTE_CHECK(num_threads >= 1, "num_threads must be >= 1, got ", num_threads);
  std::vector<py::object> keep;
  const std::vector<Seq> batch = borrow_seqs(seqs, keep);
  const auto n = static_cast<py::ssize_t>(batch.size());
  py::array_t<int64_t> counts(n);
  int64_t* counts_ptr = counts.mutable_data();
  Status st;
  {
    py::gil_scoped_release release;
    st = ntengine::kmer::count_tokens(batch.data(), n, opts, counts_ptr, num_threads);
  }
  return py::make_tuple(counts,
                        py::make_tuple(st.code, st.seq, st.start, st.end));
}

void fill_tokens(const py::list& seqs, const Options& opts,
                 py::array_t<int32_t, py::array::c_style> ids,      // [B, L]
                 py::array_t<int64_t, py::array::c_style> offsets,  // [B, L, 2]
                 py::array_t<bool, py::array::c_style> mask,        // [B, L]
                 int num_threads) {
  NTE_CHECK(num_threads >= 1, "num_threads must be >= 1, got ", num_threads);
  std::vector<py::object> keep;
  const std::vector<Seq> batch = borrow_seqs(seqs, keep);
  const auto n = static_cast<py::ssize_t>(batch.size());
  NTE_CHECK(ids.ndim() == 2 && ids.shape(0) == n && ids.shape(1) >= 1,
            "ids must be [", n, ", L>=1]");
  const py::ssize_t len = ids.shape(1);
  NTE_CHECK(offsets.ndim() == 3 && offsets.shape(0) == n && offsets.shape(1) == len &&
                offsets.shape(2) == 2,
            "offsets must be [", n, ", ", len, ", 2]");
  NTE_CHECK(mask.ndim() == 2 && mask.shape(0) == n && mask.shape(1) == len,
            "mask must be [", n, ", ", len, "]");
  int32_t* ids_ptr = ids.mutable_data();  // mutable_data() raises if read-only
  int64_t* off_ptr = offsets.mutable_data();
  auto* mask_ptr = reinterpret_cast<uint8_t*>(mask.mutable_data());
  py::gil_scoped_release release;
  ntengine::kmer::fill_tokens(batch.data(), n, opts, len, ids_ptr, off_ptr, mask_ptr,
                              num_threads);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "ntengine compiled core: tokenizer (ntengine/tokenizer.py) and CPU kernels (ntengine/ops.py).";

  py::enum_<Mode>(m, "Mode", "How bytes other than A C G T N are treated.")
      .value("strict", Mode::kStrict)
      .value("fold_case", Mode::kFoldCase)
      .value("fold_case_invalid_as_n", Mode::kFoldCaseInvalidAsN);

  py::enum_<StatusCode>(m, "StatusCode", "Outcome of count_tokens.")
      .value("ok", StatusCode::kOk)
      .value("invalid_char", StatusCode::kInvalidChar)
      .value("unknown_token", StatusCode::kUnknownToken);

  py::class_<Options>(m, "Options", "Token id layout of a vocabulary plus the mode.")
      .def(py::init<>())
      .def_readwrite("kmer_offset", &Options::kmer_offset)
      .def_readwrite("base_offset", &Options::base_offset)
      .def_readwrite("cls_id", &Options::cls_id)
      .def_readwrite("pad_id", &Options::pad_id)
      .def_readwrite("mask_id", &Options::mask_id)
      .def_readwrite("mode", &Options::mode);

  m.def("count_tokens", &count_tokens, py::arg("seqs"), py::arg("options"),
        py::arg("num_threads"),
        "Validate and count tokens: (counts int64 [B], (status, seq, start, end)).");
  // noconvert: a dtype/layout mismatch must raise, not write into a temporary copy.
  m.def("fill_tokens", &fill_tokens, py::arg("seqs"), py::arg("options"),
        py::arg("ids").noconvert(), py::arg("offsets").noconvert(), py::arg("mask").noconvert(),
        py::arg("num_threads"), "Write ids [B, L], offsets [B, L, 2], mask [B, L] in place.");
  m.def("simd_level", &ntengine::kmer::simd_level, "Vector path compiled in: avx2/sse2/scalar.");
  ntengine::bind_cpu_kernels(m);
}
