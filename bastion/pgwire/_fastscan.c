/* Splitting a relay's read into whole protocol messages, in one pass over the bytes.
 *
 * The same work as bastion.pgwire.scanner.Scanner._scan_python, which stays the reference: the
 * tests check that both give the same messages, runs and stopping point for any input. Only
 * the five-byte header of each message is read; bodies are sliced (a message that is the whole
 * read is passed on as the same object) or, for the bulk types, counted into runs.
 *
 * scan(data: bytes, items: list, bulk: bytes, limit: int, frame: type, run: type)
 *     -> (end: int, code: int, value: int)
 *   bulk: 256 bytes, non-zero where a message type is bulk (DataRow, CopyData ...).
 *   frame, run: the Frame(type, raw) and Run(messages, raw) tuple subclasses to build.
 *   Appends to items; end is where the whole messages stop. code 0: every byte up to end was
 *   used and the rest is shorter than a header; 1: the message at end is incomplete and
 *   value is how many bytes it needs; 2: the message at end has the invalid length value.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* A tuple-subclass instance from already-made items (what tuple.__new__(cls, items) does). */
static PyObject *make_pair(PyTypeObject *type, PyObject *first, PyObject *second) {
    if (first == NULL || second == NULL) {
        Py_XDECREF(first);
        Py_XDECREF(second);
        return NULL;
    }
    PyObject *pair = type->tp_alloc(type, 2);
    if (pair == NULL) {
        Py_DECREF(first);
        Py_DECREF(second);
        return NULL;
    }
    PyTuple_SET_ITEM(pair, 0, first);
    PyTuple_SET_ITEM(pair, 1, second);
    return pair;
}

static int append_run(PyObject *items, PyTypeObject *run, PyObject *data, PyObject **view,
                      Py_ssize_t start, Py_ssize_t stop, Py_ssize_t count) {
    if (*view == NULL) {
        *view = PyMemoryView_FromObject(data);
        if (*view == NULL)
            return -1;
    }
    PyObject *item = make_pair(run, PyLong_FromSsize_t(count),
                               PySequence_GetSlice(*view, start, stop));
    if (item == NULL)
        return -1;
    int failed = PyList_Append(items, item);
    Py_DECREF(item);
    return failed;
}

static int append_frame(PyObject *items, PyTypeObject *frame, PyObject *data,
                        const char *bytes, Py_ssize_t size, Py_ssize_t start, Py_ssize_t stop) {
    PyObject *raw;
    if (start == 0 && stop == size) {
        Py_INCREF(data);
        raw = data;
    } else {
        raw = PyBytes_FromStringAndSize(bytes + start, stop - start);
    }
    PyObject *item = make_pair(frame, PyBytes_FromStringAndSize(bytes + start, 1), raw);
    if (item == NULL)
        return -1;
    int failed = PyList_Append(items, item);
    Py_DECREF(item);
    return failed;
}

static int is_tuple_type(PyObject *type) {
    return PyType_Check(type) && PyType_IsSubtype((PyTypeObject *)type, &PyTuple_Type);
}

static PyObject *scan(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 6 || !PyBytes_Check(args[0]) || !PyList_Check(args[1]) ||
        !PyBytes_Check(args[2]) || PyBytes_GET_SIZE(args[2]) != 256 || !PyLong_Check(args[3]) ||
        !is_tuple_type(args[4]) || !is_tuple_type(args[5])) {
        PyErr_SetString(PyExc_TypeError,
                        "scan(data: bytes, items: list, bulk: bytes[256], limit: int, "
                        "frame: type, run: type)");
        return NULL;
    }
    PyObject *data = args[0], *items = args[1], *view = NULL;
    const unsigned char *bytes = (const unsigned char *)PyBytes_AS_STRING(data);
    const char *bulk = PyBytes_AS_STRING(args[2]);
    long long limit = PyLong_AsLongLong(args[3]);
    if (limit == -1 && PyErr_Occurred())
        return NULL;
    PyTypeObject *frame = (PyTypeObject *)args[4], *run = (PyTypeObject *)args[5];
    Py_ssize_t size = PyBytes_GET_SIZE(data), pos = 0, run_start = -1, run_count = 0;
    long long code = 0, value = 0;
    while (size - pos >= 5) {
        int32_t length = (int32_t)(((uint32_t)bytes[pos + 1] << 24) |
                                   ((uint32_t)bytes[pos + 2] << 16) |
                                   ((uint32_t)bytes[pos + 3] << 8) | (uint32_t)bytes[pos + 4]);
        if (length < 4 || (long long)length > limit) {
            code = 2;
            value = length;
            break;
        }
        Py_ssize_t stop = pos + 1 + (Py_ssize_t)length;
        if (stop > size) {
            code = 1;
            value = stop - pos;
            break;
        }
        if (bulk[bytes[pos]]) {
            if (run_count == 0)
                run_start = pos;
            run_count++;
        } else {
            if (run_count) {
                if (append_run(items, run, data, &view, run_start, pos, run_count) < 0)
                    goto fail;
                run_count = 0;
            }
            if (append_frame(items, frame, data, (const char *)bytes, size, pos, stop) < 0)
                goto fail;
        }
        pos = stop;
    }
    if (run_count && append_run(items, run, data, &view, run_start, pos, run_count) < 0)
        goto fail;
    Py_XDECREF(view);
    return Py_BuildValue("(nLL)", pos, code, value);
fail:
    Py_XDECREF(view);
    return NULL;
}

static PyMethodDef methods[] = {
    {"scan", (PyCFunction)(void (*)(void))scan, METH_FASTCALL,
     "Split bytes into whole messages: frames, and runs of the bulk types."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fastscan",
    "The compiled message splitter for relays (see bastion/pgwire/scanner.py).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__fastscan(void) { return PyModule_Create(&module); }
