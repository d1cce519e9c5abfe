package stampede

import "encoding/json"

func (c *Cache[V]) encode(v V) (b []byte, err error) {
	if c.codec != nil {
		defer catch(&err)
		return c.codec.Marshal(v)
	}
	switch x := any(v).(type) {
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	}
	return json.Marshal(v)
}

func (c *Cache[V]) decode(b []byte) (v V, err error) {
	if c.codec != nil {
		defer catch(&err)
		err = c.codec.Unmarshal(b, &v)
		return v, err
	}
	switch p := any(&v).(type) {
	case *string:
		*p = string(b)
		return v, nil
	case *[]byte:
		*p = append([]byte{}, b...)
		return v, nil
	}
	err = json.Unmarshal(b, &v)
	return v, err
}
